"""The wall clock of the dataflow's live timers, frozen for tests (the ``clock`` fixture in
``conftest.py`` puts it in place of ``dataflows.steps._now``)."""

from __future__ import annotations

from datetime import UTC, datetime

START = datetime(2026, 1, 1, tzinfo=UTC)


class Clock:
    """Stands at :data:`START` until a test moves ``now``."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now
