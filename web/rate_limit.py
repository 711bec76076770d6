"""How fast: requests per second per user, and refusals per second per client address.

Both are token buckets. A user's holds up to twice their rate, so a burst is allowed and a flood is not, and one
user's flood leaves the others untouched. An address's refusals (a wrong token, a user past their rate) beyond a
small budget are answered only after a pause: a client that ignores its 401s and 429s then costs the server one
answer a second per connection instead of as many as it can send, and guessing tokens gets slower still.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from workerctl.protocol.errors import ApiError, ErrorKind

log = logging.getLogger(__name__)

REFUSALS_PER_SECOND = 10.0
REFUSAL_PAUSE_SECONDS = 1.0
_FORGET_PAST_KEYS = 4096  # more buckets than this, and the full ones are dropped: a full bucket is a new one
_FORGET_EVERY_SECONDS = 1.0  # at most this often: a look at every bucket is not paid on every request


class TokenBuckets:
    """A bucket per key, refilled at `per_second` up to `capacity`."""

    def __init__(self, per_second: float, capacity: float, clock: Callable[[], float]) -> None:
        self.per_second = per_second
        self.capacity = capacity
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when counted)
        self._forgotten_at = float("-inf")

    def take(self, key: str) -> float:
        """Take a token of `key`'s bucket and return 0, or, if it has none, the seconds until it has one."""
        now = self.clock()
        tokens = self._tokens(key, now)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / self.per_second
        self._buckets[key] = (tokens - 1, now)
        if len(self._buckets) > _FORGET_PAST_KEYS and now - self._forgotten_at >= _FORGET_EVERY_SECONDS:
            self._forget_full(now)
        return 0.0

    def _tokens(self, key: str, now: float) -> float:
        tokens, counted = self._buckets.get(key, (self.capacity, now))
        return min(self.capacity, tokens + (now - counted) * self.per_second)

    def _forget_full(self, now: float) -> None:
        self._forgotten_at = now
        for key in [key for key in self._buckets if self._tokens(key, now) >= self.capacity]:
            del self._buckets[key]


class RateLimiter:
    def __init__(self, per_second: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_second = per_second  # 0: no limit
        self._buckets = TokenBuckets(per_second, 2 * per_second, clock)

    def take(self, user: str) -> None:
        """Count one request of `user`; a RATE_LIMITED ApiError, saying when to try again, past the rate."""
        if not self.per_second:
            return
        wait = self._buckets.take(user)
        if wait:
            raise ApiError(ErrorKind.RATE_LIMITED, f"more than {self.per_second:g} requests a second; try again in "
                                                   f"{wait:.2f} s", retry_after=wait)


class RefusalBrake:
    def __init__(self, per_second: float = REFUSALS_PER_SECOND, pause: float = REFUSAL_PAUSE_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.per_second = per_second
        self.pause = pause
        self._buckets = TokenBuckets(per_second, 2 * per_second, clock)
        self._braked: set[str] = set()  # addresses past their budget since they last were within it

    def pause_before_refusing(self, address: str) -> float:
        """Count one refusal answered to `address`: the seconds to wait before answering it, 0 within the budget."""
        if not self._buckets.take(address):
            self._braked.discard(address)
            return 0.0
        if address not in self._braked:
            self._braked.add(address)
            log.warning("answering %s's refusals slowly: more than %g a second", address, self.per_second)
        return self.pause
