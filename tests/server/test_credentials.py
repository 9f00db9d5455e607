"""The credential re-check of long-lived connections (server/credentials.py) on its own: a
clock the test moves and an authenticator it controls, so revocation is tested as well as
expiry (the token map cannot change while the server runs, and a JWKS client caches keys)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

from resolvers.identity import Identity
from server.auth import CredentialExpired
from server.credentials import EXPIRED, REVOKED, CredentialCheck, close_at_expiry, until_expiry
from server.floor import IdentityRefused

ALICE = Identity("alice", expires_at=1000.0)


@dataclass
class Connection:
    identity: Identity
    authorization: str | None = "Bearer alice-token"


@dataclass
class Authenticator:
    """Answers what the test says the token proves now, counting the questions."""

    answer: Identity | None = ALICE
    refuse: bool = False
    lapsed: bool = False
    asked: list[str] = field(default_factory=list)

    async def __call__(self, authorization: str) -> Identity | None:
        self.asked.append(authorization)
        if self.refuse:
            raise IdentityRefused("alice", "below the floor")
        if self.lapsed:
            raise CredentialExpired
        return self.answer


async def test_a_credential_holds_until_it_expires_or_is_withdrawn() -> None:
    """Before expiry and still accepted: holds (asking the authenticator each time). Expired,
    no longer accepted, refused, or now naming someone else: refused, with a reason."""
    now = [999.0]
    authenticator = Authenticator()
    check = CredentialCheck(authenticator, clock=lambda: now[0])
    assert await check.refusal(Connection(ALICE)) is None
    assert authenticator.asked == ["Bearer alice-token"]
    authenticator.answer = None
    assert await check.refusal(Connection(ALICE)) == EXPIRED
    authenticator.answer = Identity("alice", admin=True)
    assert await check.refusal(Connection(ALICE)) == REVOKED
    authenticator.answer, authenticator.refuse = ALICE, True
    assert await check.refusal(Connection(ALICE)) == REVOKED
    authenticator.refuse, authenticator.lapsed = False, True
    assert await check.refusal(Connection(ALICE)) == EXPIRED  # the issuer's clock says so
    authenticator.lapsed = False
    now[0] = 1000.0
    assert await check.refusal(Connection(ALICE)) == EXPIRED
    assert len(authenticator.asked) == 5  # our own clock decides without asking


async def test_token_map_identities_never_expire_but_are_checked_again() -> None:
    """No expires_at: it holds as long as the token map still knows the token."""
    forever = Identity("bob")
    authenticator = Authenticator(answer=forever)
    check = CredentialCheck(authenticator, clock=lambda: 1e12)
    assert await check.refusal(Connection(forever)) is None
    authenticator.answer = None
    assert await check.refusal(Connection(forever)) == REVOKED
    assert await check.refusal(Connection(forever, authorization=None)) == REVOKED
    assert await check.refusal(Connection(Identity.anonymous())) is None


async def test_close_at_expiry_closes_once_at_the_moment() -> None:
    """The timer closes with 4401 when the identity expires, and not for one that does not."""
    closed: list[tuple[int, str]] = []

    class Socket:
        async def close(self, code: int, reason: str) -> None:
            closed.append((code, reason))

    loop = asyncio.get_running_loop()
    start = loop.time()
    soon = Identity("alice", expires_at=loop.time() - start + 0.2)
    await close_at_expiry(soon, Socket(), clock=lambda: loop.time() - start)
    assert closed == [(4401, EXPIRED)] and loop.time() - start >= 0.19
    await close_at_expiry(Identity("bob"), Socket(), clock=lambda: 0.0)
    assert len(closed) == 1


async def test_a_stream_stops_at_expiry_with_one_error() -> None:
    """Events pass until the deadline; then one UNAUTHENTICATED error, and the source is
    closed (a subscription leaves its poller)."""
    finished = asyncio.Event()

    async def events() -> AsyncGenerator[int, None]:
        try:
            n = 0
            while True:
                yield n
                n += 1
                await asyncio.sleep(0.05)
        finally:
            finished.set()

    loop = asyncio.get_running_loop()
    seen: list[Any] = [v async for v in until_expiry(events(), loop.time() + 0.22, loop.time)]
    assert seen[:-1] == list(range(len(seen) - 1)) and 3 <= len(seen) - 1 <= 6
    error = seen[-1].errors[0]
    assert error.extensions == {"code": "UNAUTHENTICATED"}
    assert finished.is_set()


async def test_a_stream_that_ends_first_ends_as_it_would() -> None:
    """Before the deadline, a subscription that completes completes: no error added."""

    async def two() -> AsyncGenerator[int, None]:
        yield 1
        yield 2

    loop = asyncio.get_running_loop()
    assert [v async for v in until_expiry(two(), loop.time() + 60, loop.time)] == [1, 2]
