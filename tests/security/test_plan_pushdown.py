"""Fetch plans attacked: a filter value becomes a squeue option only after it is checked, and
pushing options down never widens what a request sees. Under SLURM_GRAPHQL_JOB_VISIBILITY=own
every squeue a request runs names its own user, whatever the query asks for, so bob's filters
naming alice, her job ids or her array find nothing of hers, as an anonymous request's do."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from server.tokens import TokenMap
from tests.support.app import app_client
from tests.support.counting import CountingTransport
from tests.support.visibility import EVERYTHING, Jobs, assert_nothing_of_alice, own_settings
from tests.support.visibility import jobs as jobs  # the module's fixture
from transport.local import LocalTransport

pytestmark = pytest.mark.cluster


@dataclass
class Counted:
    client: httpx.AsyncClient
    transport: CountingTransport

    async def raw(self, user: str | None, query: str, **variables: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {user}-token"} if user else {}
        response = await self.client.post(
            "/graphql", json={"query": query, "variables": variables}, headers=headers
        )
        assert response.status_code == 200, response.text
        return response

    def squeues(self, since: int) -> list[tuple[str, ...]]:
        batches = self.transport.batches[since:]
        return [argv for batch in batches for argv in batch if argv[0] == "squeue"]


@pytest.fixture(params=[0.0, 60.0], ids=["cache-off", "cache-60s"])
async def own(request: pytest.FixtureRequest, unix_users: None) -> AsyncIterator[Counted]:
    """The app under `own` over the real cluster, its commands counted."""
    transport = CountingTransport(LocalTransport())
    settings = own_settings(cache_ttl=request.param)
    async with app_client(settings, {"local": transport}) as client:
        yield Counted(client, transport)


@pytest.fixture
async def anonymous(unix_users: None) -> AsyncIterator[Counted]:
    """The app under `own` with no authentication: every request reads as `nobody`."""
    transport = CountingTransport(LocalTransport())
    settings = own_settings(tokens=TokenMap())
    async with app_client(settings, {"local": transport}) as client:
        yield Counted(client, transport)


def attacks(jobs: Jobs) -> list[tuple[str, dict[str, Any]]]:
    """What bob asks to reach alice's jobs through a pushed-down plan."""
    return [
        (
            'query { cluster { jobs(filter: {users: ["alice"]}) { totalCount edges { node { '
            "...Everything } } } } }",
            {},
        ),
        (
            'query($ids: [String!]) { cluster { jobs(filter: {ids: $ids, users: ["alice"]}) { '
            "totalCount edges { node { ...Everything } } } } }",
            {"ids": list(jobs.alice_forms)},
        ),
        (
            "query($id: String!) { cluster { job(id: $id) { ...Everything } "
            "task: job(id: $id) { displayId } } }",
            {"id": jobs.alice_running},
        ),
        (
            "query($id: String!) { cluster { job(id: $id) { ...Everything } } }",
            {"id": f"{jobs.alice_held}_2"},
        ),
        (
            "query { cluster { jobs(filter: {states: [RUNNING, PENDING, COMPLETED], "
            'users: ["alice", "bob"], partitions: ["batch"]}) { totalCount edges { node { '
            "...Everything } } } } }",
            {},
        ),
    ]


async def test_pushed_filters_never_widen_what_own_sees(own: Counted, jobs: Jobs) -> None:
    """bob filtering by alice, her ids or her array: every squeue names bob alone
    (--user=bob), and no answer holds anything of hers."""
    await attack(own, jobs, "bob")
    # bob still finds his own job through the same plan.
    found = await own.raw("bob", f'{{ cluster {{ job(id: "{jobs.bob_running}") {{ user }} }} }}')
    assert found.json()["data"]["cluster"]["job"] == {"user": "bob"}


async def test_an_anonymous_request_is_pushed_as_nobody(anonymous: Counted, jobs: Jobs) -> None:
    """Without authentication, the same attacks run squeue --user=nobody and find nothing."""
    await attack(anonymous, jobs, None)


async def attack(own: Counted, jobs: Jobs, who: str | None) -> None:
    as_user = who or "nobody"
    for query, variables in attacks(jobs):
        before = own.transport.calls
        response = await own.raw(who, query + EVERYTHING, **variables)
        body = response.json()
        assert "errors" not in body, body
        assert_nothing_of_alice(response.text, jobs)
        for argv in own.squeues(before):
            users = [a for a in argv if a.startswith("--user")]
            assert users == [f"--user={as_user}"], argv


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("users", "alice;id"),
        ("users", "$(touch /tmp/pwned)"),
        ("users", "alice,root"),
        ("users", "--help"),
        ("users", "Alice Smith"),
        ("partitions", "batch,debug"),
        ("partitions", "`reboot`"),
        ("partitions", "-p"),
    ],
)
async def test_filter_values_reach_argv_only_when_squeue_reads_them_literally(
    field: str, value: str, unix_users: None
) -> None:
    """As an administrator (so the value would be pushed as is): a value with shell or list
    metacharacters is never put on squeue's command line; the filter is applied by the API
    alone and finds nothing."""
    transport = CountingTransport(LocalTransport())
    settings = own_settings(job_visibility="all")
    async with app_client(settings, {"local": transport}) as client:
        counted = Counted(client, transport)
        response = await counted.raw(
            "carol",
            "query($v: [String!]) { cluster { jobs(filter: {" + field + ": $v}) { totalCount } } }",
            v=[value],
        )
        assert response.json() == {"data": {"cluster": {"jobs": {"totalCount": 0}}}}
        [squeue] = counted.squeues(0)
        assert not any(value in argument for argument in squeue), squeue
        assert not any(a.startswith(("--user", "--partition")) for a in squeue), squeue


async def test_bad_ids_and_control_bytes_run_nothing(unix_users: None) -> None:
    """Ids that are not Slurm's and names with control bytes are refused before any command."""
    transport = CountingTransport(LocalTransport())
    async with app_client(own_settings(), {"local": transport}) as client:
        counted = Counted(client, transport)
        for query, variables in (
            ("query($v: String!) { cluster { job(id: $v) { displayId } } }", {"v": "1 -u root"}),
            ("query($v: String!) { cluster { job(id: $v) { displayId } } }", {"v": "1,2"}),
            (
                "query($v: [String!]) { cluster { jobs(filter: {ids: $v}) { totalCount } } }",
                {"v": ["1;id"]},
            ),
            (
                "query($v: [String!]) { cluster { jobs(filter: {users: $v}) { totalCount } } }",
                {"v": ["bob\nroot"]},
            ),
        ):
            body = (await counted.raw("bob", query, **variables)).json()
            assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body
        assert transport.calls == 0


async def test_an_administrator_filter_is_pushed_as_is(jobs: Jobs, unix_users: None) -> None:
    """carol (admin) sees everyone's jobs: her users filter is squeue's --user=alice, and finds
    alice's jobs as the full queue does."""
    transport = CountingTransport(LocalTransport())
    async with app_client(own_settings(), {"local": transport}) as client:
        counted = Counted(client, transport)
        listing = (
            'jobs(filter: {users: ["alice"]}, first: 200) { edges { node { displayId user } } }'
        )
        pushed = (await counted.raw("carol", f"{{ cluster {{ {listing} }} }}")).json()
        [squeue] = counted.squeues(0)
        assert "--user=alice" in squeue
        full = (
            await counted.raw(
                "carol", f"{{ cluster {{ {listing} all: jobs(first: 0) {{ totalCount }} }} }}"
            )
        ).json()
        assert "--user=alice" not in counted.squeues(1)[0]
        assert pushed["data"]["cluster"]["jobs"] == full["data"]["cluster"]["jobs"]
        found = pushed["data"]["cluster"]["jobs"]["edges"]
        assert found and {e["node"]["user"] for e in found} == {"alice"}
