"""Per-identity token buckets (SLURM_GRAPHQL_RATE_LIMIT / _BURST): 429 RATE_LIMITED, no command."""

from __future__ import annotations

import pytest

from server.rate_limit import RateLimiter
from server.settings import Settings, SettingsError
from server.tokens import parse_token_map
from tests.conftest import TOKENS
from tests.support.app import app_client
from tests.support.counting import CountingTransport
from transport.local import LocalTransport


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_is_allowed_then_one_request_per_period() -> None:
    """Rate 2/s, burst 3: three at once, the fourth waits 0.5 s, which then refills one."""
    clock = Clock()
    limiter = RateLimiter(2.0, 3, clock=clock)
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a") == pytest.approx(0.5)
    clock.now += 0.5
    assert limiter.take("a") == 0.0
    assert limiter.take("a") > 0


def test_identities_have_separate_buckets() -> None:
    """One identity spending its burst leaves another's untouched."""
    limiter = RateLimiter(1.0, 1, clock=Clock())
    assert limiter.take("alice") == 0.0
    assert limiter.take("alice") > 0
    assert limiter.take("bob") == 0.0


def test_an_idle_bucket_refills_only_up_to_the_burst() -> None:
    """An hour idle gives back the burst, not an hour of requests."""
    clock = Clock()
    limiter = RateLimiter(1.0, 2, clock=clock)
    limiter.take("a")
    clock.now += 3600
    assert [limiter.take("a") for _ in range(3)][:2] == [0.0, 0.0]
    assert limiter.take("a") > 0


def test_remembered_keys_are_bounded() -> None:
    """Past max_keys, the least recently seen key is forgotten: memory stays bounded."""
    limiter = RateLimiter(1.0, 1, clock=Clock(), max_keys=100)
    for n in range(10_000):
        limiter.take(f"client-{n}")
    assert len(limiter) == 100
    assert limiter.take("client-9999") > 0  # recent: still remembered, still empty


async def test_over_the_limit_an_identity_gets_429_and_runs_nothing() -> None:
    """alice's third request within the burst of 2 gets 429 with Retry-After; bob still runs."""
    counting = CountingTransport(LocalTransport())
    # 0.01/s: no token comes back during the test, so no clock is needed here.
    settings = Settings(tokens=parse_token_map(TOKENS), rate_limit=0.01, rate_burst=2)
    query = {"query": "{ __typename }"}
    async with app_client(settings, {"local": counting}) as client:
        alice = {"authorization": "Bearer alice-token"}
        first = [await client.post("/graphql", json=query, headers=alice) for _ in range(2)]
        refused = await client.post("/graphql", json=query, headers=alice)
        bob = await client.post(
            "/graphql", json=query, headers={"authorization": "Bearer bob-token"}
        )
    assert [r.status_code for r in first] == [200, 200]
    assert refused.status_code == 429
    assert refused.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    retry_after = int(refused.headers["retry-after"])
    assert 1 <= retry_after <= 100
    assert bob.status_code == 200
    assert counting.calls == 0


async def test_a_refused_mutation_costs_no_transport_call() -> None:
    """Without tokens the client address is the key; the refused mutation never reaches Slurm."""
    counting = CountingTransport(LocalTransport())
    settings = Settings(rate_limit=0.01, rate_burst=1)
    async with app_client(settings, {"local": counting}) as client:
        await client.post("/graphql", json={"query": "{ __typename }"})
        refused = await client.post(
            "/graphql", json={"query": 'mutation { cancelJob(id: "1") { __typename } }'}
        )
    assert refused.status_code == 429
    assert counting.calls == 0


def test_the_limit_is_read_from_the_environment() -> None:
    """Off by default; rate and burst from the environment; a negative rate names the variable."""
    assert Settings.from_environ({}).rate_limit == 0
    settings = Settings.from_environ(
        {"SLURM_GRAPHQL_RATE_LIMIT": "2.5", "SLURM_GRAPHQL_RATE_BURST": "10"}
    )
    assert (settings.rate_limit, settings.rate_burst) == (2.5, 10)
    with pytest.raises(SettingsError, match="SLURM_GRAPHQL_RATE_LIMIT"):
        Settings.from_environ({"SLURM_GRAPHQL_RATE_LIMIT": "-1"})
