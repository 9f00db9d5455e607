"""Subscription events executed by the app's executors (fast or stock) keep no state from one
event to the next."""

from __future__ import annotations

import time

import pytest
from graphql import parse

from schema import build_schema
from server.budget import Budget, BudgetedExecutionContext
from server.execution import LeanExecutionContext

EXECUTORS = [LeanExecutionContext, BudgetedExecutionContext]
EVENTS = "subscription { jobEvents { kind job { displayId state } } }"


@pytest.mark.parametrize("executor_class", EXECUTORS)
def test_each_subscription_event_starts_with_caches_of_its_own(
    executor_class: type[BudgetedExecutionContext],
) -> None:
    """Per-event executors share no memo with the subscription's (shared, they grew forever).
    `_relevant_sub_fields` is graphql-core's private memo: this test is also the tripwire for a
    graphql-core release that renames it."""
    schema = build_schema(execution_context_class=executor_class)
    executor = executor_class.build(schema._schema, parse(EVENTS))
    assert isinstance(executor, executor_class)
    first = executor.build_per_event_executor(None)
    second = executor.build_per_event_executor(None)
    memos = ["_relevant_sub_fields"]
    if issubclass(executor_class, LeanExecutionContext):
        memos += ["_plans", "_compiled_sets"]
    for name in memos:
        assert getattr(first, name) is not getattr(executor, name)
        assert getattr(first, name) is not getattr(second, name)


@pytest.mark.parametrize("executor_class", EXECUTORS)
def test_each_subscription_event_has_a_budget_of_its_own(
    executor_class: type[BudgetedExecutionContext],
) -> None:
    """An event's execution spends its own fields and seconds, not what earlier events spent."""
    budgeted = executor_class.with_budget(Budget(max_fields=100, max_seconds=5.0))
    schema = build_schema(execution_context_class=budgeted)
    executor = budgeted.build(schema._schema, parse(EVENTS))
    assert isinstance(executor, executor_class)
    executor._spent = 99
    executor._deadline = time.monotonic() - 1  # spent
    event = executor.build_per_event_executor(None)
    assert event.budget == Budget(max_fields=100, max_seconds=5.0)
    assert event._spent == 0 and event._deadline > time.monotonic() + 4
    assert event._exceeded is None and not event._waiting_turn
