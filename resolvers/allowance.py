"""How much job output one execution may still read: a count of reads and of bytes asked for.

The cost rule (server/cost.py) refuses, before anything runs, a document that could read more;
this is the same limit held while it runs, where the number of jobs is known rather than bounded.
A read past the allowance fails with QUERY_TOO_COMPLEX before it is queued, so nothing reaches
the head node for it.

The executor starts an allowance for each execution (each request, each subscription event) in
a context variable: resolvers reach it without the executor, and the request context, which a
WebSocket connection shares between all its operations, holding it.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

from graphql import GraphQLError


@dataclass
class OutputAllowance:
    reads: int
    bytes: int

    def take(self, tail_bytes: int) -> None:
        """Spend one read of `tail_bytes`, or raise QUERY_TOO_COMPLEX if it is not left."""
        if self.reads < 1:
            raise _refused("this request has read as many output files as it may")
        if tail_bytes > self.bytes:
            raise _refused("this request has read as many bytes of output as it may")
        self.reads -= 1
        self.bytes -= tail_bytes


# None outside an execution (a reader used on its own): no allowance to spend.
current_allowance: ContextVar[OutputAllowance | None] = ContextVar("output_allowance", default=None)


def take_output_allowance(tail_bytes: int) -> None:
    allowance = current_allowance.get()
    if allowance is not None:
        allowance.take(tail_bytes)


def _refused(message: str) -> GraphQLError:
    # Already the client-facing error: expected_errors_as_graphql passes GraphQLErrors through.
    return GraphQLError(message, extensions={"code": "QUERY_TOO_COMPLEX"})
