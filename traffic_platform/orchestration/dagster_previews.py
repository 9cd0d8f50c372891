"""Dagster APIs we use knowingly although Dagster marks them beta or preview.

Dagster warns (``BetaWarning``/``PreviewWarning``) each time such an API is used, which
put noise between the demo's progress bar and its summary. Each warning is silenced only
around the calls in our code that raise it (``with accepted_previews(...)``), never by a
process-wide filter, so a new use of an unstable API still warns. Each entry says why we
accept it.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

# name -> (warning category, start of its message, why we accept it)
KNOWN: dict[str, tuple[type[Warning], str, str]] = {
    "multi_observable_source_asset": (
        dg.BetaWarning, r"Function `multi_observable_source_asset` is currently in beta",
        "observing the four ingest tables in one query pass; a breaking change shows in test_definitions",
    ),
    "include_sources": (
        dg.BetaWarning, r"Parameter `include_sources` of function `AssetSelection.groups` is currently in beta",
        "the observation job selects the observable source assets of the ingest group",
    ),
    "partitioned_checks": (
        dg.PreviewWarning, r"Specifying a partitions_def on an AssetCheckSpec is currently in preview",
        "checks run per daily partition (verified on Dagster 1.13.27, see TOOLING-NOTES)",
    ),
    "sensor_owners": (
        dg.BetaWarning, r"Parameter `owners` of initializer `SensorDefinition.__init__` is currently in beta",
        "raised by Dagster itself when it binds resources to job-targeting sensors (we pass no owners)",
    ),
}


@contextmanager
def accepted_previews(*names: str) -> Iterator[None]:
    """Silence the named :data:`KNOWN` warnings inside the block only."""
    with warnings.catch_warnings():
        for name in names:
            category, message, _ = KNOWN[name]
            warnings.filterwarnings("ignore", message=message, category=category)
        yield
