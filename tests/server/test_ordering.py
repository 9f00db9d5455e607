"""jobs(orderBy:) on the real cluster: the order squeue's own fields give, and cursors that stay
right when a job is submitted and another cancelled between two pages."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from server.settings import Settings
from tests.support.app import app_client
from tests.support.scenario import Scenario, sbatch, slurm
from transport.local import LocalTransport

pytestmark = pytest.mark.cluster

# This test's own jobs only (held, so they wait whatever the cluster runs): cancelling one of
# them changes nobody else's, where cancelling whatever came second in the listing cancelled
# the session's scenario job that later tests read as RUNNING.
NAME = "ordering-under-test"
USERS = ("root", "alice", "bob")
PAGE = """query($after: String, $first: Int!, $name: String!) { cluster { jobs(first: $first,
  after: $after, filter: {states: [PENDING, RUNNING], names: [$name]},
  orderBy: [{field: USER}, {field: SUBMIT_TIME, direction: DESC}]) {
  totalCount edges { cursor node { jobId displayId user submitTime } }
  pageInfo { hasNextPage endCursor } } } }"""


def squeue_order() -> list[int]:
    """This test's jobs as squeue lists them waiting or running, by user, then newest
    submission first, then job id."""
    out = slurm(
        "squeue", "--noheader", "--states=PENDING,RUNNING", f"--name={NAME}", "--format=%A|%u|%V"
    )
    # %V is a local date; the API compares epoch seconds, and the order is the same.
    rows = []
    for line in out.splitlines():
        job_id, user, submitted = line.split("|")
        epoch = datetime.fromisoformat(submitted).timestamp()
        rows.append((user, -epoch, int(job_id)))
    return [job_id for *_, job_id in sorted(rows)]


async def test_order_and_cursors_while_jobs_come_and_go(scenario: Scenario) -> None:
    """The whole listing is squeue's order; paging 5 at a time while a new job arrives (its
    submit time is the newest, so it sorts before the cursor) and a seen one is cancelled, no
    job is repeated or skipped."""
    settings = Settings(cache_ttl=0.0, max_page_size=1000)
    ours = [
        sbatch("--hold", f"--job-name={NAME}", "-p", "batch", "--wrap", "true", user=user)
        for user in USERS
        for _ in range(4)
    ]
    try:
        async with app_client(settings, {"local": LocalTransport()}) as client:

            async def page(after: str | None, first: int) -> dict[str, Any]:
                response = await client.post(
                    "/graphql",
                    json={
                        "query": PAGE,
                        "variables": {"after": after, "first": first, "name": NAME},
                    },
                )
                body: dict[str, Any] = response.json()
                assert "errors" not in body, body
                return body["data"]["cluster"]["jobs"]  # type: ignore[no-any-return]

            whole = [e["node"]["jobId"] for e in (await page(None, 1000))["edges"]]
            assert sorted(whole) == sorted(int(j) for j in ours)
            assert whole == squeue_order()

            first = await page(None, 5)
            seen = [e["node"]["jobId"] for e in first["edges"]]
            # alice's newest: first of all by user, then by submission, so before the cursor.
            newcomer = sbatch(
                "--hold", f"--job-name={NAME}", "-p", "batch", "--wrap", "true", user="alice"
            )
            ours.append(newcomer)
            slurm("scancel", str(seen[1]))
            after = first["pageInfo"]["endCursor"]
            while after is not None:
                found = await page(after, 5)
                seen += [e["node"]["jobId"] for e in found["edges"]]
                after = found["pageInfo"]["endCursor"] if found["pageInfo"]["hasNextPage"] else None
    finally:
        slurm("scancel", *ours)
    assert len(seen) == len(set(seen))
    assert int(newcomer) not in seen[5:]
    survivors = [j for j in whole if j != seen[1]]
    assert [j for j in seen if j in survivors] == survivors
