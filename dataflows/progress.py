r"""Progress bars on stderr for the long commands: count, rate and, when the total is known, ETA.

tqdm draws them (small, no dependencies of its own, and the usual look of a Python command
line). A bar shows only when stderr is a terminal and ``--quiet`` is not given, so logs and
pipes get no carriage returns; ``operators`` stays free of it by taking ``track``, any function
that passes an iterable through.

>>> import io
>>> class Terminal(io.StringIO):
...     def isatty(self):
...         return True
>>> screen = Terminal()
>>> sum(track(range(3), total=3, what="events", stream=screen))
3
>>> print(screen.getvalue().split("\r")[1])  # the first frame; later ones show rate and ETA
  0%|          | 0/3 [00:00<?, ? events/s]
>>> screen = io.StringIO()  # not a terminal: nothing drawn
>>> list(track(range(3), total=3, stream=screen)), screen.getvalue()
([0, 1, 2], '')
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from typing import TextIO, TypeVar

from tqdm import tqdm

T = TypeVar("T")
#: What ``operators`` functions take to report progress: the iterable, passed through.
Track = Callable[[Iterable[T]], Iterable[T]]


def bar(
    total: int | None, what: str = "events", quiet: bool = False, stream: TextIO | None = None
) -> tqdm:
    """A bar counting ``what``, to ``update()`` by hand; a no-op when not shown."""
    return tqdm(
        total=total,
        unit=f" {what}",
        dynamic_ncols=True,
        file=stream or sys.stderr,
        # None: off when the stream is not a terminal.
        disable=True if quiet else None,
        leave=False,
    )


def track(
    iterable: Iterable[T],
    total: int | None = None,
    what: str = "events",
    quiet: bool = False,
    stream: TextIO | None = None,
) -> Iterator[T]:
    """``iterable``, counted on a bar as it is consumed."""
    with bar(total, what, quiet, stream) as shown:
        for item in iterable:
            yield item
            shown.update()


def tracker(total: int | None, what: str = "events", quiet: bool = False) -> Track:
    """A ``track`` function for ``operators`` (one bar per call)."""

    def wrap(iterable: Iterable[T]) -> Iterable[T]:
        return track(iterable, total, what, quiet)

    return wrap
