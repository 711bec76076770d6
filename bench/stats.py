"""Small statistics: percentiles of samples, and the median with min–max of one figure over repeated rounds."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(samples: Sequence[float], fraction: float) -> float:
    """The `fraction` quantile (0.5 for the median) by linear interpolation; NaN without samples."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    position = fraction * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class Spread:
    """One figure over the rounds of a run: its median and its range."""

    median: float
    low: float
    high: float
    rounds: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        present = [value for value in values if not math.isnan(value)]
        if not present:
            return cls(math.nan, math.nan, math.nan, 0)
        return cls(statistics.median(present), min(present), max(present), len(present))

    @property
    def missing(self) -> bool:
        return self.rounds == 0
