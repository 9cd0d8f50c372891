"""The one shape of the per-day checks: open a connection, run a ``check_*`` function on the
partition, return its result. Each module keeps its ``check_*`` functions (tested directly)
and declares its Dagster checks with :func:`partition_check`."""

from collections.abc import Callable, Sequence

import dagster as dg
from sqlalchemy.engine import Connection

from ..dagster_previews import accepted_previews
from ..resources import DatabaseResource

# (connection, partition key) -> result
CheckOnPartition = Callable[[Connection, str], dg.AssetCheckResult]


def partition_check(partitions: dg.PartitionsDefinition, run: CheckOnPartition, *, asset: dg.AssetKey, name: str,
                    description: str, blocking: bool = False,
                    additional_deps: Sequence[dg.AssetKey] = ()) -> dg.AssetChecksDefinition:
    """A check on ``asset`` that runs per partition of ``partitions``; ``blocking`` stops downstream assets."""
    with accepted_previews("partitioned_checks"):

        @dg.asset_check(asset=asset, name=name, blocking=blocking, partitions_def=partitions,
                        additional_deps=list(additional_deps), description=description)
        def _check(context: dg.AssetCheckExecutionContext, database: DatabaseResource) -> dg.AssetCheckResult:
            with database.get_engine().connect() as conn:
                return run(conn, context.partition_key)

    return _check
