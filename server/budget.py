"""The budget of one execution: how many fields it may resolve, for how long, and how much of
the event loop it may hold at once.

Past its fields or seconds, the whole execution stops with one QUERY_TOO_COMPLEX error and no
data: the error is raised through every level (`handle_field_error`) rather than nulling one
field and carrying on, and `build_response` drops whatever was collected. And so that one large
execution never holds the event loop for long, once it has worked `yield_after` seconds without
a pause (`_waiting_turn`), the executor defers the rest of what it is doing (server/execution.py)
and each deferred part waits for a turn of the loop of its own: other requests (and /healthz)
are answered in between, whatever the budget allows.

Each execution also starts the output allowance of resolvers/allowance.py.

Subscriptions: graphql-core runs each event on a shallow copy of the subscription's executor
(`build_per_event_executor`), so every event would share the executor's memo of collected
subfields (graphql-core's own) and the lean executor's plan caches. All of them are keyed by the
identity of lists and field sets that each event makes anew, so, shared, they gain entries with
every event for as long as the subscription lasts: about 5 KB an event, measured with 1,000
subscribers (graphql-core 3.3.2). Each event therefore starts with caches of its own, and with a
budget of its own: a subscription lasts for hours, each event's execution is what the budget
bounds.

This executor is graphql-core's own execution with the budget counted where fields are
executed (`execute_fields`); it is what SLURM_GRAPHQL_FAST_EXECUTION=false runs. The lean
executor (server/execution.py) completes simple fields faster on top of it.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from graphql import (
    ExecutionResult,
    GraphQLError,
    GraphQLObjectType,
    GraphQLResolveInfoHelpers,
    VariableDefinitionNode,
)
from graphql.execution.collect_fields import GroupedFieldSet
from graphql.pyutils import Path
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from resolvers.allowance import OutputAllowance, current_allowance
from server.client_errors import BAD_USER_INPUT, GRAPHQL_VALIDATION_FAILED

# Synchronous work an execution may do before others get a turn of the event loop. Short enough
# that a cheap request waits for a few of these at most, long enough that the extra awaits cost
# a large listing nothing measurable.
YIELD_AFTER = 0.02
# Fields resolved between two looks at the clock (a look costs about as much as a field).
LOOK_EVERY = 256


@dataclass(frozen=True)
class Budget:
    """What one execution (a request, or one subscription event) may spend."""

    max_fields: int = 1_000_000
    max_seconds: float = 20.0
    max_output_reads: int = 20
    max_output_bytes: int = 4 * 1024 * 1024
    yield_after: float = YIELD_AFTER  # seconds of work before others get a turn of the loop


def _finished(*args: Any) -> Any:
    raise RuntimeError("this execution has built its response")


# What an executor hands out after its response is built: nothing may ask it for async work
# then (resolvers got the helpers of the execution they ran in, in `info`).
_AFTER_RESPONSE = GraphQLResolveInfoHelpers(gather=_finished, track=_finished)


_Executor = TypeVar("_Executor", bound="BudgetedExecutionContext")


class BudgetedExecutionContext(StrawberryGraphQLCoreExecutionContext):
    budget: ClassVar[Budget] = Budget()

    @classmethod
    def with_budget(cls: type[_Executor], budget: Budget) -> type[_Executor]:
        """This executor with `budget` (graphql-core builds executors itself, from a class)."""
        return type(cls.__name__, (cls,), {"budget": budget})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._start_budget()

    @classmethod
    def build(cls, *args: Any, **kwargs: Any) -> Any:
        """graphql-core's executor, or the errors that stopped it being built: the operation is
        missing or unknown, or a variable does not fit its type. Both are the client's, coded
        here by where they come from (a variable's error points at its definition), never by
        their wording."""
        built = super().build(*args, **kwargs)
        if isinstance(built, list):
            for error in built:
                variable = any(isinstance(n, VariableDefinitionNode) for n in error.nodes or ())
                code = BAD_USER_INPUT if variable else GRAPHQL_VALIDATION_FAILED
                error.extensions = {**(error.extensions or {}), "code": code}
        return built

    def build_per_event_executor(self, payload: Any) -> Any:
        executor = super().build_per_event_executor(payload)
        assert isinstance(executor, BudgetedExecutionContext)
        executor._forget_per_event_caches()
        executor._start_budget()
        return executor

    def _forget_per_event_caches(self) -> None:
        """Give this (per-event) executor memos of its own. `_relevant_sub_fields` is graphql-core's
        memo of `collect_subfields`, private, which is why graphql-core is pinned to the tested
        minor release (pyproject.toml) and tests/server/test_live_execution.py checks it."""
        self._relevant_sub_fields = type(self._relevant_sub_fields)()

    def execute_fields(
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Path | None,
        grouped_field_set: GroupedFieldSet,
        position_context: Any,
    ) -> Any:
        self._tick(len(grouped_field_set))
        if self._waiting_turn:
            return self._fields_later(
                parent_type, source_value, path, grouped_field_set, position_context
            )
        return self._execute_fields_now(
            parent_type, source_value, path, grouped_field_set, position_context
        )

    async def _fields_later(self, *args: Any) -> Any:
        await self._next_turn()
        try:
            result = self._execute_fields_now(*args)
        finally:
            self._release()
        return await result if self.is_awaitable(result) else result

    def _execute_fields_now(
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Path | None,
        grouped_field_set: GroupedFieldSet,
        position_context: Any,
    ) -> Any:
        """The fields executed now, by graphql-core (the lean executor overrides this)."""
        return super().execute_fields(
            parent_type, source_value, path, grouped_field_set, position_context
        )

    def _start_budget(self) -> None:
        now = time.monotonic()
        self._spent = 0
        self._next_look = LOOK_EVERY
        self._deadline = now + self.budget.max_seconds
        self._turn_started = now
        # True once this turn is used up: every loop of this execution then defers its rest.
        self._waiting_turn = False
        # Deferred parts of this execution, resumed one per turn of the loop, oldest first:
        # waking them all each turn would cost a turn as much as their number.
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._pump_scheduled = False
        self._exceeded: GraphQLError | None = None
        budget = self.budget
        current_allowance.set(OutputAllowance(budget.max_output_reads, budget.max_output_bytes))

    def _tick(self, fields: int) -> None:
        """Count `fields` resolved; raise once the budget is spent; end this turn once it has
        lasted `yield_after` (`_waiting_turn`)."""
        self._spent += fields
        if self._spent < self._next_look:
            return
        self._next_look = self._spent + LOOK_EVERY
        if self._exceeded is not None:
            raise self._exceeded
        budget = self.budget
        now = time.monotonic()
        if self._spent > budget.max_fields:
            self._stop(f"query resolved more than {budget.max_fields} fields")
        if now > self._deadline:
            self._stop(f"query ran longer than {budget.max_seconds:g} seconds")
        if now - self._turn_started > budget.yield_after:
            self._waiting_turn = True

    def _stop(self, message: str) -> None:
        self._exceeded = GraphQLError(message, extensions={"code": "QUERY_TOO_COMPLEX"})
        self._next_look = 0  # every later tick raises it too
        while self._waiters:  # each raises it as it wakes
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
        raise self._exceeded

    async def _next_turn(self) -> None:
        """Wait for this deferred part's own turn of the loop."""
        if self._exceeded is not None:
            raise self._exceeded
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._release()
        try:
            await waiter
        except asyncio.CancelledError:
            self._release()  # pass the turn on
            raise
        if self._exceeded is not None:
            raise self._exceeded
        self._waiting_turn = False
        self._turn_started = time.monotonic()

    def _release(self) -> None:
        """Let the next deferred part run in a later turn (once the current one is done)."""
        if self._waiters and not self._pump_scheduled:
            self._pump_scheduled = True
            asyncio.get_running_loop().call_soon(self._pump)

    def _pump(self) -> None:
        self._pump_scheduled = False
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():  # a cancelled one passes its turn on
                waiter.set_result(None)
                return

    def handle_field_error(self, raw_error: Exception, *args: Any, **kwargs: Any) -> None:
        # A spent budget stops the whole execution, not just the field it was noticed in.
        if self._exceeded is not None:
            raise self._exceeded
        super().handle_field_error(raw_error, *args, **kwargs)

    def build_response(self, data: dict[str, Any] | None) -> Any:
        try:
            if self._exceeded is None:
                return super().build_response(data)
            self.run_async_work_finished_hook()
            return ExecutionResult(None, [self._exceeded])
        finally:
            self._break_cycle()

    def _break_cycle(self) -> None:
        """Let reference counting free this executor once its response is built.

        graphql-core's executor refers to itself through `async_helpers` (a tuple of two of its
        own bound methods, handed to resolvers in `info`), so without this only the cyclic
        collector frees it, and with it everything it reaches: the request's context, its
        snapshots (a 10,000-job listing holds megabytes) and caches. Under a mixed load that
        garbage reached the old generations and waited there for a full collection, and RSS
        grew with the request count (bench/memory.py). Resolvers still running in the
        background keep their `info`, which holds the helpers itself; this executor no longer
        does, so nothing leads back to it."""
        self.async_helpers = _AFTER_RESPONSE
