"""Keeping Python's cycle collector out of the way of loops over many tasks or runs.

A process that imported MLflow, pandas and scikit-learn holds about 370,000 objects the cycle
collector tracks, and each of its full passes scans all of them: 0.3 s on the 2-core build
machine. A worker loop allocates enough to start one every hundred or so small tasks, and a
collection of a few hundred runs several, which made them several percent of a loop's time
and a third of a collection's.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cycle collector for the block, then restore it as it was.

    For a burst of allocation that keeps what it makes (a collection loading many runs).
    Reference counting still frees what the block drops; cycles wait for the next pass.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class SetupFrozen:
    """Within its ``with`` block, what a loop set up is left out of the collector's scans.

    A loop calls :meth:`settled` after its first task, when the imports and caches it needed
    are loaded: the objects alive then are frozen (``gc.freeze``), so later full passes scan
    only what the loop made since; the block's end unfreezes them, and the next full pass
    frees any garbage among them. Nothing is done when the collector is off or the process
    froze objects itself (a ``gc.freeze`` before forking workers stays as it was).
    """

    def __init__(self) -> None:
        self.frozen = False

    def __enter__(self) -> SetupFrozen:
        return self

    def settled(self) -> None:
        """Freeze the objects alive now, the first time it is called."""
        if not self.frozen and gc.isenabled() and gc.get_freeze_count() == 0:
            gc.freeze()
            self.frozen = True

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self.frozen:
            gc.unfreeze()
            self.frozen = False
