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
