"""A request leaves no reference cycle behind (issue 18, item 4: memory that stays flat).

What a request allocates must be freed by reference counting when it ends. Anything in a cycle
waits for the cyclic collector instead, and the server's thresholds (server/gc_tuning.py) let
garbage that survived a young collection wait for a full one: each executor that referred to
itself kept its request's context and snapshots (a 10,000-job listing holds megabytes), and RSS
grew with the number of requests (bench/memory.py). Here the collector's DEBUG_SAVEALL keeps
whatever only it could free, and the test names it.

The documents are parsed and validated once before the measured requests: graphql-core's
validation rules keep bound methods of themselves (its visitors' enter/leave maps), which is
cyclic garbage per new document that only graphql-core could avoid; a document is validated once
and its verdict cached (server/documents.py), and that garbage refers to nothing of a request.
"""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Iterator

import pytest

from server.settings import Settings
from tests.support.app import app_client
from tests.support.scenario import Scenario

FIELDS = "id name user state reason submitTime numCpus nodeList"


def queries(scenario: Scenario) -> list[str]:
    return [
        f"{{ cluster {{ jobs(first: 50) {{ edges {{ node {{ {FIELDS} }} }} }} }} }}",
        f'{{ cluster {{ job(id: "{scenario.running}") {{ {FIELDS} }} }} }}',
        "{ cluster { jobs(filter: {states: [RUNNING]}) { totalCount } } }",
        "{ cluster { nodes { name state cpus cpusAllocated } } }",
        "{ clusters { partitions { name nodes { name jobs { id state } } } } }",
        '{ cluster { job(id: "999999999") { id } } }',  # a miss
        "{ cluster { jobs(first: 1, after: 12) { totalCount } } }",  # a client error
    ]


class SavedGarbage:
    """The cyclic garbage made after `start`: the collector runs only when asked, and keeps
    what it finds in `gc.garbage` (DEBUG_SAVEALL) instead of freeing it."""

    def start(self) -> None:
        gc.set_debug(0)
        gc.collect()  # what came before is freed, not saved (saved cycles stay cycles)
        gc.garbage.clear()
        gc.set_debug(gc.DEBUG_SAVEALL)

    def found(self) -> Counter[str]:
        gc.collect()
        return describe(gc.garbage)


@pytest.fixture
def saved_garbage() -> Iterator[SavedGarbage]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield SavedGarbage()
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.collect()
        if enabled:
            gc.enable()


# Where the types of a request's objects come from: ours, and the libraries that run a request.
REQUEST_MODULES = (
    "server.",
    "resolvers.",
    "schema.",
    "transport.",
    "graphql.execution",
    "strawberry.",
    "starlette.",
    "uvicorn.",
)


def describe(garbage: list[object]) -> Counter[str]:
    """The garbage whose types come from REQUEST_MODULES, by type."""
    names = (f"{type(o).__module__}.{type(o).__qualname__}" for o in garbage)
    return Counter(n for n in names if n.startswith(REQUEST_MODULES))


@pytest.mark.parametrize("fast_execution", [True, False], ids=["lean", "stock"])
async def test_requests_leave_no_cycles(
    scenario: Scenario, saved_garbage: SavedGarbage, fast_execution: bool
) -> None:
    """After each kind of read (lists, one job, a miss, nodes, nested, an error) on both
    executors, the cyclic collector finds nothing a request made."""
    # No snapshot or response cache: every request runs its execution and Slurm's commands.
    settings = Settings(
        clusters=(("local", "local://"),),
        cache_ttl=0.0,
        response_cache=False,
        fast_execution=fast_execution,
    )
    async with app_client(settings) as client:
        documents = queries(scenario)
        for query in documents:  # parsed, validated and their verdicts cached
            assert (await client.post("/graphql", json={"query": query})).status_code == 200
        saved_garbage.start()

        for _ in range(3):
            for query in documents:
                response = await client.post("/graphql", json={"query": query})
                assert response.status_code == 200
        answers = response.json()
        found = saved_garbage.found()
    assert answers["errors"], "the last query is a client error: its path is covered too"
    assert not found, f"cyclic garbage left by requests: {found.most_common(12)}"
