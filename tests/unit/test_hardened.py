"""The hardened service's retry policy, driven by a fake clock and a seeded random: no sleeping."""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from chaos_dynamo.clock import FakeClock
from chaos_dynamo.services.hardened import (
    BreakerOpen,
    BreakerState,
    CircuitBreaker,
    FullJitter,
    HardenedCaller,
    TokenBucket,
    is_retryable,
)


def client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, "GetItem")


def outage() -> Exception:
    return EndpointConnectionError(endpoint_url="http://dynamodb.us-east-1.amazonaws.com:8000/")


class Flaky:
    """Fails with ``error`` the first ``failures`` times it is called, then returns "ok"."""

    def __init__(self, failures: float, error: Callable[[], Exception] = outage) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error()
        return "ok"


class Sleeps:
    """A sleep that records each wait and moves the fake clock."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.clock.advance(seconds)


def caller(clock: FakeClock, *, capacity: float = 100.0, per_second: float = 0.0,
           threshold: int = 1000, cool_down: float = 2.0, seed: int = 1,
           max_attempts: int = 4) -> tuple[HardenedCaller, Sleeps]:
    sleeps = Sleeps(clock)
    return HardenedCaller(
        TokenBucket(capacity=capacity, per_success=0.1, per_second=per_second, clock=clock),
        CircuitBreaker(failure_threshold=threshold, cool_down=cool_down, clock=clock),
        max_attempts=max_attempts, wait=FullJitter(0.1, 2.0, random.Random(seed)), sleep=sleeps,
    ), sleeps


# --- what is retried -----------------------------------------------------------------------

@pytest.mark.parametrize(("error", "expected"), [
    (outage(), True),
    (ReadTimeoutError(endpoint_url="http://x"), True),
    (client_error("ProvisionedThroughputExceededException", 400), True),
    (client_error("ThrottlingException", 400), True),
    (client_error("InternalServerError", 500), True),
    (client_error("ServiceUnavailable", 503), True),
    (client_error("ValidationException", 400), False),
    (client_error("ResourceNotFoundException", 400), False),
    (ValueError("a bug"), False),
])
def test_only_transient_failures_are_retryable(error: Exception, expected: bool) -> None:
    assert is_retryable(error) is expected


# --- token bucket ----------------------------------------------------------------------------

def test_bucket_gives_a_retry_per_token_then_refuses() -> None:
    bucket = TokenBucket(capacity=3, per_success=0.5, per_second=0.0, clock=FakeClock())
    assert [bucket.try_acquire() for _ in range(4)] == [True, True, True, False]
    assert bucket.tokens == 0


def test_bucket_refills_per_success_and_per_second_up_to_capacity() -> None:
    clock = FakeClock()
    bucket = TokenBucket(capacity=2, per_success=0.5, per_second=0.25, initial=0, clock=clock)
    assert not bucket.try_acquire()
    bucket.record_success()
    bucket.record_success()
    assert bucket.tokens == pytest.approx(1.0)
    assert bucket.try_acquire() and not bucket.try_acquire()
    clock.advance(4.0)  # 0.25 tokens/s: one more retry
    assert bucket.try_acquire() and not bucket.try_acquire()
    clock.advance(1000)
    assert bucket.tokens == 2  # never above capacity


def test_bucket_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        TokenBucket(capacity=0)


# --- circuit breaker -------------------------------------------------------------------------

def test_breaker_opens_after_consecutive_failures_only() -> None:
    breaker = CircuitBreaker(failure_threshold=3, cool_down=2.0, clock=FakeClock())
    for _ in range(2):
        breaker.record_failure()
    breaker.record_success()  # resets the run
    for _ in range(2):
        breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED and breaker.admit() is False
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN and breaker.is_open and breaker.opened == 1
    with pytest.raises(BreakerOpen, match="failing fast"):
        breaker.admit()


def test_breaker_half_opens_for_one_probe_after_the_cool_down() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, cool_down=2.0, clock=clock)
    breaker.record_failure()
    clock.advance(1.99)
    with pytest.raises(BreakerOpen):
        breaker.admit()
    clock.advance(0.01)
    assert breaker.admit() is True  # the probe
    assert breaker.state is BreakerState.HALF_OPEN
    with pytest.raises(BreakerOpen):
        breaker.admit()  # one probe at a time
    breaker.record_failure()  # the probe failed: open for another cool-down
    assert breaker.state is BreakerState.OPEN and breaker.opened == 2
    with pytest.raises(BreakerOpen):
        breaker.admit()
    clock.advance(2.0)
    assert breaker.admit() is True
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED and breaker.admit() is False


# --- backoff ---------------------------------------------------------------------------------

def test_waits_are_capped_exponential_with_full_jitter() -> None:
    clock = FakeClock()
    waits_by_retry: dict[int, list[float]] = {1: [], 2: [], 3: []}
    c, sleeps = caller(clock, capacity=1e9, seed=7)
    for _ in range(300):
        sleeps.waits.clear()
        with pytest.raises(EndpointConnectionError):
            c.call(Flaky(float("inf")))
        assert len(sleeps.waits) == 3
        for n, wait in enumerate(sleeps.waits, start=1):
            waits_by_retry[n].append(wait)
    for n, waits in waits_by_retry.items():
        cap = min(2.0, 0.1 * 2 ** (n - 1))
        assert all(0 <= w <= cap for w in waits)
        assert max(waits) > 0.8 * cap and min(waits) < 0.2 * cap  # the whole range: full jitter
    means = [statistics.mean(waits_by_retry[n]) for n in (1, 2, 3)]
    assert means[0] < means[1] < means[2]  # growing
    assert len(set(waits_by_retry[1])) == 300  # never the same wait twice: not synchronized


def test_the_cap_holds_for_late_attempts() -> None:
    clock = FakeClock()
    c, sleeps = caller(clock, capacity=1e9, max_attempts=12)
    with pytest.raises(EndpointConnectionError):
        c.call(Flaky(float("inf")))
    assert len(sleeps.waits) == 11 and max(sleeps.waits) <= 2.0


def test_the_same_seed_gives_the_same_waits() -> None:
    def waits(seed: int) -> list[float]:
        c, sleeps = caller(FakeClock(), seed=seed)
        for _ in range(5):
            with pytest.raises(EndpointConnectionError):
                c.call(Flaky(float("inf")))
        return sleeps.waits

    assert waits(3) == waits(3) != waits(4)


# --- the retry loop --------------------------------------------------------------------------

def test_a_transient_failure_is_retried_until_success() -> None:
    clock = FakeClock()
    c, sleeps = caller(clock)
    attempts: list[int] = []
    c.on_attempt = lambda: attempts.append(1)
    fn = Flaky(2)
    assert c.call(fn) == "ok"
    assert fn.calls == 3 and len(attempts) == 3 and len(sleeps.waits) == 2
    assert clock.monotonic() == pytest.approx(sum(sleeps.waits))


def test_at_most_four_attempts_then_the_last_error() -> None:
    c, sleeps = caller(FakeClock())
    fn = Flaky(float("inf"))
    with pytest.raises(EndpointConnectionError):
        c.call(fn)
    assert fn.calls == 4 and len(sleeps.waits) == 3


def test_a_client_mistake_is_not_retried_and_does_not_trip_the_breaker() -> None:
    c, sleeps = caller(FakeClock(), threshold=1)
    fn = Flaky(float("inf"), lambda: client_error("ValidationException", 400))
    with pytest.raises(ClientError):
        c.call(fn)
    assert fn.calls == 1 and sleeps.waits == [] and c.breaker.state is BreakerState.CLOSED


def test_retries_stop_when_the_budget_is_spent() -> None:
    clock = FakeClock()
    c, _ = caller(clock, capacity=5.0)
    first = Flaky(float("inf"))
    with pytest.raises(EndpointConnectionError):
        c.call(first)
    assert first.calls == 4  # 3 retries, 3 tokens; the last attempt spends none
    assert c.bucket.tokens == pytest.approx(2.0)
    second = Flaky(float("inf"))
    with pytest.raises(EndpointConnectionError):
        c.call(second)
    assert second.calls == 3 and c.budget_denied == 1  # 2 tokens left: 2 retries
    third = Flaky(float("inf"))
    with pytest.raises(EndpointConnectionError):
        c.call(third)
    assert third.calls == 1 and c.budget_denied == 2  # no token: no retry at all
    for _ in range(10):  # ten successful calls earn one retry back
        assert c.call(Flaky(0)) == "ok"
    fourth = Flaky(float("inf"))
    with pytest.raises(EndpointConnectionError):
        c.call(fourth)
    assert fourth.calls == 2


def test_the_open_breaker_fails_fast_then_probes_once() -> None:
    clock = FakeClock()
    c, _ = caller(clock, threshold=2, cool_down=2.0)
    for _ in range(2):
        with pytest.raises(EndpointConnectionError):
            c.call(Flaky(float("inf")))
    assert c.breaker.state is BreakerState.OPEN
    untouched = Flaky(0)
    with pytest.raises(BreakerOpen):
        c.call(untouched)
    assert untouched.calls == 0 and c.rejected == 1  # no attempt made

    clock.advance(2.0)
    probe = Flaky(float("inf"))
    with pytest.raises(EndpointConnectionError):
        c.call(probe)
    assert probe.calls == 1  # the half-open probe is a single attempt, no retries
    assert c.breaker.state is BreakerState.OPEN
    with pytest.raises(BreakerOpen):
        c.call(Flaky(0))

    clock.advance(2.0)
    assert c.call(Flaky(0)) == "ok"  # the probe succeeds: closed again
    assert c.breaker.state is BreakerState.CLOSED
    recovered = Flaky(1)
    assert c.call(recovered) == "ok" and recovered.calls == 2  # retries are back


def test_a_breaker_that_opens_mid_call_ends_its_retries() -> None:
    clock = FakeClock()
    c, _ = caller(clock, threshold=1)

    calls = 0

    def fails_while_others_fail() -> str:
        nonlocal calls
        calls += 1
        c.breaker.record_failure()  # meanwhile, another worker's call failed and opened it
        raise outage()

    with pytest.raises(EndpointConnectionError):
        c.call(fails_while_others_fail)
    assert calls == 1 and c.bucket.tokens == 100  # no retry, no token spent
