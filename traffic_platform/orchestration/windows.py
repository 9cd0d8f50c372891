"""The reporting windows, declared once.

Everything per window comes from :data:`WINDOWS`: the ``traffic_counts_<name>`` tables
and their MySQL DDL (:mod:`.sql.reporting_tables`), the window-start SQL of each dialect
(derived from the length, :mod:`.sql.dialects`), the ``reporting/traffic_counts_<name>``
assets and their reconcile checks, and the ``v_traffic_counts_<name>`` views
(:mod:`.sql.view_files`). Adding a window is one line here, its tests, and regenerating
the checked-in SQL (the commands are in the headers of ``sql/reporting_tables.mysql.sql``
and of the view files).

Windows are local wall-clock intervals aligned at local midnight: a window of ``seconds``
starts at ``midnight + k * seconds``, so its length must divide a day. Lengths are
nominal (a DST day still has 24 one-hour windows; see :mod:`.sql.aggregation`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

DAY_SECONDS = 24 * 60 * 60
_NAME = re.compile(r"^[a-z0-9]+$")


@dataclass(frozen=True)
class ReportingWindow:
    """One reporting window: ``name`` is the suffix of its table, view, asset and check."""

    name: str
    seconds: int

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"window name {self.name!r} must be lower-case letters and digits")
        if not (isinstance(self.seconds, int) and 0 < self.seconds <= DAY_SECONDS and DAY_SECONDS % self.seconds == 0):
            raise ValueError(f"window {self.name!r}: {self.seconds!r} s must be a whole number of seconds that divides a day")

    @property
    def table(self) -> str:
        return f"traffic_counts_{self.name}"

    @property
    def view(self) -> str:
        return f"v_traffic_counts_{self.name}"

    @property
    def wide_view(self) -> str:
        """Its view with one column per traffic class."""
        return f"{self.view}_wide"

    @property
    def check(self) -> str:
        """The name of its blocking reconcile check."""
        return f"{self.table}_reconcile"


WINDOWS: tuple[ReportingWindow, ...] = (
    ReportingWindow("15min", 15 * 60),
    ReportingWindow("hourly", 60 * 60),
    ReportingWindow("daily", DAY_SECONDS),
)


def window_named(name: str, windows: Iterable[ReportingWindow] = WINDOWS) -> ReportingWindow:
    """The window called ``name``; ``KeyError`` if there is none."""
    for window in windows:
        if window.name == name:
            return window
    raise KeyError(f"no reporting window {name!r}")
