"""One round of the benchmark: the figures it measured, and the order in which contenders take their turns.

On a shared machine only figures measured close together compare, so every family of measurements runs each
contender in turn, and the turn order rotates from round to round (and from repetition to repetition), so
that drift in the machine's speed does not always favour the same contender.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


class Round:
    def __init__(self, index: int) -> None:
        self.index = index
        self.values: dict[str, float] = {}
        self.failures: list[str] = []

    def put(self, key: str, value: float) -> None:
        self.values[key] = float(value)

    def get(self, key: str) -> float:
        return self.values.get(key, math.nan)

    def rotated(self, items: Sequence[T], shift: int = 0) -> list[T]:
        """`items` in this round's turn order; `shift` rotates further, for repetitions within a round."""
        items = list(items)
        if not items:
            return items
        start = (self.index + shift) % len(items)
        return items[start:] + items[:start]

    def attempt(self, what: str, measure: Callable[[], None]) -> None:
        """Run one measurement; if it fails, note why and go on with the others (its figures stay missing)."""
        try:
            measure()
        except Exception as error:  # one broken part must not cost the whole run
            message = f"round {self.index + 1}: {what} failed: {type(error).__name__}: {error}"
            self.failures.append(message)
            print(f"bench: {message}", file=sys.stderr)
