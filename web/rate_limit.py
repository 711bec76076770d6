"""Requests per second per user: a token bucket each, holding up to twice the rate, so a burst is allowed and a
flood is not; one user's flood leaves the others untouched."""

from __future__ import annotations

import time
from collections.abc import Callable

from workerctl.protocol.errors import ApiError, ErrorKind


class RateLimiter:
    def __init__(self, per_second: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_second = per_second  # 0: no limit
        self.capacity = 2 * per_second
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # user -> (tokens, when counted)

    def take(self, user: str) -> None:
        """Count one request of `user`; a RATE_LIMITED ApiError, saying when to try again, past the rate."""
        if not self.per_second:
            return
        now = self.clock()
        tokens, counted = self._buckets.get(user, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - counted) * self.per_second)
        if tokens < 1:
            self._buckets[user] = (tokens, now)
            wait = (1 - tokens) / self.per_second
            raise ApiError(ErrorKind.RATE_LIMITED, f"more than {self.per_second:g} requests a second; try again in "
                                                   f"{wait:.2f} s", retry_after=wait)
        self._buckets[user] = (tokens - 1, now)
