"""Subscription events executed by the app's executor keep no state from one event to the next."""

from __future__ import annotations

from graphql import parse

from schema import build_schema
from server.live_execution import LiveExecutionContext


def test_each_subscription_event_starts_with_caches_of_its_own() -> None:
    """Per-event executors share no memo with the subscription's (shared, they grew forever)."""
    schema = build_schema(execution_context_class=LiveExecutionContext)
    document = parse("subscription { jobEvents { kind job { id state } } }")
    executor = LiveExecutionContext.build(schema._schema, document)
    assert isinstance(executor, LiveExecutionContext)
    first = executor.build_per_event_executor(None)
    second = executor.build_per_event_executor(None)
    for name in ("_relevant_sub_fields", "_plans", "_compiled_sets"):
        assert getattr(first, name) is not getattr(executor, name)
        assert getattr(first, name) is not getattr(second, name)


def test_each_subscription_event_has_a_budget_of_its_own() -> None:
    """An event's execution spends its own fields and seconds, not what earlier events spent."""
    import time

    from server.budget import Budget

    executor_class = LiveExecutionContext.with_budget(Budget(max_fields=100, max_seconds=5.0))
    schema = build_schema(execution_context_class=executor_class)
    document = parse("subscription { jobEvents { kind job { id state } } }")
    executor = executor_class.build(schema._schema, document)
    assert isinstance(executor, LiveExecutionContext)
    executor._spent = 99
    executor._deadline = time.monotonic() - 1  # spent
    event = executor.build_per_event_executor(None)
    assert event.budget == Budget(max_fields=100, max_seconds=5.0)
    assert event._spent == 0 and event._deadline > time.monotonic() + 4
    assert event._exceeded is None and not event._waiting_turn
