"""An asyncio event loop with a virtual clock, for unit tests of timing: time stands still while any callback is
ready to run, and once every task waits, it jumps to the next timer (trio's `autojump_clock`, for asyncio). A
60 s time limit then passes in a millisecond, and every timing is exact: nothing else runs meanwhile to make it
late. Descriptors are still watched (a pipe with data wakes the loop at once), but a wait never blocks: nothing
under test may wait on another thread, and a wait with no timer to jump to is a test that can never go on."""

from __future__ import annotations

import asyncio
import functools
import selectors
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class Stalled(RuntimeError):
    """Every task waits, and no timer is set: nothing under test can ever happen again."""


class _JumpingSelector(selectors.DefaultSelector):
    """A selector that, with nothing ready, moves the clock to the end of the wait instead of waiting."""

    now = 0.0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:
            raise Stalled("every task waits, on nothing that a timer or a descriptor could bring")
        self.now += timeout
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self._clock = _JumpingSelector()
        super().__init__(self._clock)

    def time(self) -> float:
        return self._clock.now


def in_virtual_time(test: Callable[..., Coroutine[Any, Any, T]]) -> Callable[..., T]:
    """Run the coroutine function `test` (a test, its fixtures' arguments passed on) on a VirtualTimeLoop."""
    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> T:
        with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
            return runner.run(test(*args, **kwargs))
    return run
