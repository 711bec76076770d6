"""The token buckets of web/rate_limit.py on a clock the test moves."""

from __future__ import annotations

import pytest
from workerctl.protocol.errors import ApiError, ErrorKind
from workerctl.web.rate_limit import RateLimiter, RefusalBrake, TokenBuckets


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_capacity_at_once_then_its_rate():
    clock = Clock()
    buckets = TokenBuckets(per_second=2, capacity=4, clock=clock)
    assert [buckets.take("a") for _ in range(4)] == [0, 0, 0, 0]
    assert buckets.take("a") == pytest.approx(0.5)
    assert buckets.take("b") == 0  # another key, another bucket
    clock.now += 0.5
    assert buckets.take("a") == 0 and buckets.take("a") > 0


def test_full_buckets_are_forgotten_when_there_are_many():
    clock = Clock()
    buckets = TokenBuckets(per_second=1, capacity=2, clock=clock)
    for number in range(5000):
        buckets.take(f"address {number}")
    clock.now += 10  # every bucket is full again
    buckets.take("one more")
    assert len(buckets._buckets) == 1


def test_past_the_rate_a_user_is_told_when_to_ask_again():
    limiter = RateLimiter(5, clock=Clock())
    for _ in range(10):
        limiter.take("alice")
    with pytest.raises(ApiError) as refused:
        limiter.take("alice")
    assert refused.value.kind is ErrorKind.RATE_LIMITED and refused.value.retry_after == pytest.approx(0.2)
    limiter.take("bob")


def test_no_rate_limit_at_zero():
    limiter = RateLimiter(0, clock=Clock())
    for _ in range(10_000):
        limiter.take("alice")


def test_refusals_past_the_budget_are_paused_and_logged_once(caplog):
    clock = Clock()
    brake = RefusalBrake(per_second=10, pause=1.0, clock=clock)
    assert [brake.pause_before_refusing("10.0.0.1") for _ in range(20)] == [0.0] * 20
    assert [brake.pause_before_refusing("10.0.0.1") for _ in range(3)] == [1.0] * 3
    assert brake.pause_before_refusing("10.0.0.2") == 0.0
    assert [record.getMessage() for record in caplog.records] == [
        "answering 10.0.0.1's refusals slowly: more than 10 a second"]
    clock.now += 1
    assert brake.pause_before_refusing("10.0.0.1") == 0.0
