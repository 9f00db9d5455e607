"""Parsed GraphQL documents: capped before parsing, cached by the bytes they hold.

Every channel (HTTP POST and GET, both WebSocket protocols, SSE and multipart, Lambda events)
parses through one `DocumentCache`, so the same caps hold on all of them:

- a document longer than `max_bytes` is refused (`DOCUMENT_TOO_LARGE`) before the lexer sees a
  character of it;
- one with more than `max_tokens` tokens is refused (`QUERY_TOO_COMPLEX`) as soon as the lexer
  counts one too many (graphql-core's `max_tokens`, which also counts comments), so parsing costs
  at most that many tokens whatever follows.

Dashboards send the same few documents again and again, so parsed documents (what validation
said of them, and their cost plans, server/cost.py) are kept, least recently used first out,
within `capacity` bytes of estimated memory: a few large documents cannot hold more than many
small ones. Only documents of requests that passed authentication are kept; an anonymous
caller's documents are parsed, used and dropped, so nobody can fill the cache without a
credential. The persisted-query manifest's documents are pinned (`pin`): the operator's file
bounds them, and a frontend's documents are parsed, validated and costed once per process
however many others pass through the cache. `parses`, `validations` and `costings` count the
work done, for tests and metrics.

Each caller's documents (and validated shapes, server/document_shapes.py) are kept apart, under
their `owner` (Identity.cache_key): a hit answers faster than a miss, so a shared entry would
let one user learn, by timing, which documents (which job ids, in a lookup written inline)
another user sent. The manifest's pinned documents are the operator's, public to every caller.

A document enters the cache on its second sighting (a request's parse, `parse`). Until then it
waits in a small probation list (PROBATION_ENTRIES, and a quarter of `capacity`): a client
writing ids into its documents (every lookup a new text) or an attacker sending one-off
documents churns that list only, not the documents dashboards repeat, and the memory the cache
holds stays flat (issue 18: RSS grew with every new document until the cache was full).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLError,
    NameNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    parse,
)
from graphql.error import GraphQLSyntaxError
from graphql.language import Lexer, Source, TokenKind
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import validate_document
from strawberry.types.graphql import OperationType as ChannelOperation

from resolvers.context import RequestContext
from server.cost import CostPlan
from server.document_shapes import shape_of, strings_are_free
from server.operations import Operation, select_operation
from slurm_graphql.errors import SlurmGraphQLError

DOCUMENT_TOO_LARGE = "DOCUMENT_TOO_LARGE"
QUERY_TOO_COMPLEX = "QUERY_TOO_COMPLEX"

# Measured with tracemalloc on graphql-core 3.3: a parsed token (its node and location) holds
# 400-720 bytes; the source text is held twice (the Source, and string values copied out of it).
_BYTES_PER_TOKEN = 800
_BYTES_PER_CHARACTER = 2
# A kept shape's string object and its place in the ordered dict, beyond its characters.
_BYTES_PER_SHAPE = 200
# A cost plan's term (a tuple of factors and a Cost) and the argument nodes it names, roughly.
_BYTES_PER_TERM = 400
# Documents seen once, kept for their second sighting (and for the rest of their request).
PROBATION_ENTRIES = 64
# The selection of a stand-in document (see _stand_in below).
_TYPENAME = SelectionSetNode(selections=(FieldNode(name=NameNode(value="__typename")),))


class DocumentRefused(SlurmGraphQLError):
    """A document over a cap, refused before (or while) parsing; `error` says so to the client."""

    def __init__(self, error: GraphQLError) -> None:
        super().__init__(error.message)
        self.error = error


@dataclass
class _Entry:
    document: DocumentNode
    size: int
    # graphql-core's validation errors for the document ([] when valid), once validated.
    validation: list[GraphQLError] | None = field(default=None)
    # Cost plans by operation name, once costed.
    plans: dict[str | None, CostPlan] = field(default_factory=dict)
    sightings: int = 0  # requests that parsed it while on probation


# A kept document or shape: its owner (Identity.cache_key) and its text.
_Key = tuple[str, str]


class DocumentCache:
    """Parses documents within the caps; keeps authenticated ones within `capacity` bytes."""

    def __init__(
        self,
        max_bytes: int = 128 * 1024,
        max_tokens: int = 10_000,
        capacity: int = 32 * 1024 * 1024,
    ) -> None:
        self.max_bytes = max_bytes
        self.max_tokens = max_tokens
        self.capacity = capacity
        self._entries: OrderedDict[_Key, _Entry] = OrderedDict()
        self.size = 0  # estimated bytes held by the entries
        # Documents seen once (see the module's docstring), within a quarter of `capacity`.
        self._probation: OrderedDict[_Key, _Entry] = OrderedDict()
        self.probation_size = 0
        # Shapes of documents that validated without errors (server/document_shapes.py), with
        # their estimated bytes, within a quarter of `capacity` on top of it.
        self._shapes: OrderedDict[_Key, int] = OrderedDict()
        self.shapes_size = 0
        self._pinned: dict[str, _Entry] = {}  # the manifest's documents, never evicted
        self.parses = self.validations = self.costings = 0

    def __len__(self) -> int:
        """Documents held: kept, and on probation (not the pinned)."""
        return len(self._entries) + len(self._probation)

    @property
    def kept(self) -> int:
        """Documents past probation."""
        return len(self._entries)

    def check_length(self, query: str) -> None:
        """Raises DocumentRefused when `query` is longer than the cap (in UTF-8 bytes)."""
        # len() counts code points, never more than the bytes: only a short enough text is
        # encoded to count its bytes, so a huge one costs nothing here.
        if len(query) > self.max_bytes or len(query.encode("utf-8", "surrogatepass")) > (
            self.max_bytes
        ):
            raise DocumentRefused(too_large(self.max_bytes))

    def parse(self, query: str, *, owner: str | None) -> DocumentNode:
        """`query` parsed, from `owner`'s documents when it is there (None: a caller whose
        documents are not kept, who did not authenticate). One call is one sighting: call it
        once per request (the schema's parse step). Raises DocumentRefused over a cap,
        GraphQLSyntaxError else."""
        return self._entry(query, owner, sighted=True).document

    def pin(self, query: str) -> None:
        """Keep `query` parsed for the process's life, outside the capacity (a manifest's)."""
        if query not in self._pinned:
            self._pinned[query] = self._entry(query, None, sighted=False)

    def _kept(self, query: str, document: DocumentNode, owner: str | None) -> _Entry | None:
        entry = self._pinned.get(query)
        if entry is None and owner is not None:
            key = (owner, query)
            entry = self._entries.get(key) or self._probation.get(key)
        return entry if entry is not None and entry.document is document else None

    def validated(
        self, query: str, document: DocumentNode, owner: str | None
    ) -> list[GraphQLError] | None:
        """What validation said of `query`'s cached document, if it was this one and validated."""
        entry = self._kept(query, document, owner)
        return None if entry is None else entry.validation

    def remember_validation(
        self, query: str, document: DocumentNode, owner: str | None, errors: list[GraphQLError]
    ) -> None:
        entry = self._kept(query, document, owner)
        if entry is not None:
            entry.validation = errors

    def cost_plan(
        self,
        query: str,
        document: DocumentNode,
        name: str | None,
        make: Callable[[], CostPlan],
        owner: str | None,
    ) -> CostPlan:
        """The cost plan of operation `name` of `query`'s document: the kept one, else `make()`'s,
        kept with the document when the document is kept (its bytes counted with it)."""
        entry = self._kept(query, document, owner)
        if entry is not None and name in entry.plans:
            return entry.plans[name]
        self.costings += 1
        plan = make()
        if entry is not None:
            entry.plans[name] = plan
            more = _BYTES_PER_TERM * len(plan.terms)
            key = (owner or "", query)
            if self._entries.get(key) is entry:
                entry.size += more
                self.size += more
                self._evict()
            elif self._probation.get(key) is entry:
                entry.size += more
                self.probation_size += more
                self._evict_probation()
        return plan

    def shape_validated(self, shape: str, owner: str | None) -> bool:
        """Whether a document of this shape that `owner` sent validated without errors (and the
        shape is kept)."""
        if owner is None or (key := (owner, shape)) not in self._shapes:
            return False
        self._shapes.move_to_end(key)
        return True

    def remember_shape(self, shape: str, owner: str) -> None:
        """Keep `shape` as valid for `owner`: a document of it validated without errors, and
        its strings all sit where any string is as valid as another (the caller checked both)."""
        size = _BYTES_PER_CHARACTER * len(shape) + _BYTES_PER_SHAPE
        budget = self.capacity // 4
        key = (owner, shape)
        if key in self._shapes or size > budget:
            return
        self._shapes[key] = size
        self.shapes_size += size
        while self.shapes_size > budget:
            _, evicted = self._shapes.popitem(last=False)
            self.shapes_size -= evicted

    def operation(
        self, query: str | None, name: str | None, *, owner: str | None
    ) -> Operation | None:
        """The operation `name` selects in `query`, None when there is none or the document is
        refused or does not parse (execution reports those). Not a sighting: the request's
        parse step, later, is."""
        if not query:
            return None
        try:
            document = self._entry(query, owner, sighted=False).document
        except (DocumentRefused, GraphQLError):
            return None
        return select_operation(document, name)

    def _entry(self, query: str, owner: str | None, *, sighted: bool) -> _Entry:
        pinned = self._pinned.get(query)
        if pinned is not None:
            return pinned
        if owner is not None:
            key = (owner, query)
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                return entry
            entry = self._probation.get(key)
            if entry is not None:
                entry.sightings += sighted
                if entry.sightings >= 2:  # seen again: a document worth keeping
                    del self._probation[key]
                    self.probation_size -= entry.size
                    self._keep(key, entry)
                return entry
        self.check_length(query)
        self.parses += 1
        try:
            document = parse(query, max_tokens=self.max_tokens)
        except GraphQLSyntaxError:
            if _more_tokens_than(query, self.max_tokens):
                raise DocumentRefused(too_complex(self.max_tokens)) from None
            raise
        tokens = getattr(document, "token_count", self.max_tokens)
        entry = _Entry(document, _BYTES_PER_CHARACTER * len(query) + _BYTES_PER_TOKEN * tokens)
        entry.sightings = int(sighted)
        if owner is not None and entry.size <= self.capacity // 4:
            self._probation[(owner, query)] = entry
            self.probation_size += entry.size
            self._evict_probation()
        return entry

    def _keep(self, key: _Key, entry: _Entry) -> None:
        if entry.size > self.capacity:
            return
        self._entries[key] = entry
        self.size += entry.size
        self._evict()

    def _evict(self) -> None:
        while self.size > self.capacity:
            _, evicted = self._entries.popitem(last=False)
            self.size -= evicted.size

    def _evict_probation(self) -> None:
        budget = self.capacity // 4
        while self._probation and (
            self.probation_size > budget or len(self._probation) > PROBATION_ENTRIES
        ):
            _, evicted = self._probation.popitem(last=False)
            self.probation_size -= evicted.size


def too_large(limit: int) -> GraphQLError:
    return GraphQLError(
        f"the document exceeds {limit} bytes", extensions={"code": DOCUMENT_TOO_LARGE}
    )


def too_complex(limit: int) -> GraphQLError:
    return GraphQLError(
        f"the document exceeds {limit} tokens", extensions={"code": QUERY_TOO_COMPLEX}
    )


def _stand_in(operation_name: str | None, allowed: Iterable[ChannelOperation]) -> DocumentNode:
    """A document that parses, standing in for a refused one: one operation of a type the
    channel allows (graphql-ws runs only subscriptions), with the name the request selects
    (strawberry looks it up), so strawberry gets as far as reporting the refusal."""
    kinds = sorted(kind.value for kind in allowed)
    kind = OperationType("query" if "query" in kinds or not kinds else kinds[0])
    operation = OperationDefinitionNode(
        operation=kind,
        name=NameNode(value=operation_name) if operation_name is not None else None,
        variable_definitions=(),
        directives=(),
        selection_set=_TYPENAME,
    )
    return DocumentNode(definitions=(operation,))


class CachedDocuments(SchemaExtension):
    """The schema's parse and validation, through a DocumentCache (in place of strawberry's
    ParserCache, ValidationCache and MaxTokensLimiter, whose caches count entries, not bytes,
    and keep every caller's documents).

    A refused document becomes the operation's only error, coded, on every channel: strawberry
    is handed a stand-in document with that error already recorded, so it skips validation and
    answers the error as it answers a validation failure (an error for that operation; over
    graphql-transport-ws the socket stays open, where a syntax error would close it).
    """

    def __init__(
        self, documents: DocumentCache, owner_of: Callable[[RequestContext], str | None]
    ) -> None:
        self._documents = documents
        # Whose documents a request's are (None: not kept, it did not authenticate).
        self._owner_of = owner_of

    def _owner(self) -> str | None:
        request = self.execution_context.context
        return self._owner_of(request) if isinstance(request, RequestContext) else None

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        # Should strawberry parse after all (a syntax error, reported its own way), the caps hold.
        context.parse_options["max_tokens"] = self._documents.max_tokens
        query = context.query
        if query and context.graphql_document is None:
            try:
                context.graphql_document = self._documents.parse(query, owner=self._owner())
            except DocumentRefused as refused:
                context.graphql_document = _stand_in(
                    context.operation_name, context.allowed_operations
                )
                context.pre_execution_errors = [refused.error]
            except GraphQLSyntaxError:
                pass  # strawberry parses it again (within the caps) and reports the error
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        document, query = context.graphql_document, context.query
        if context.pre_execution_errors is not None or document is None or not query:
            yield  # refused above, or nothing to validate
            return
        documents, owner = self._documents, self._owner()
        errors = documents.validated(query, document, owner)
        shape = None
        if errors is None:
            # A document like one that validated, but for its strings (a job by another id).
            shape = shape_of(document)
            if shape is not None and documents.shape_validated(shape, owner):
                errors = []
                documents.remember_validation(query, document, owner, errors)
        if errors is None:
            schema = context.schema._schema  # as strawberry's own ValidationCache does
            documents.validations += 1
            errors = validate_document(schema, document, context.validation_rules)
            documents.remember_validation(query, document, owner, errors)
            if (
                not errors
                and shape is not None
                and owner is not None
                and strings_are_free(schema, document)
            ):
                documents.remember_shape(shape, owner)
        context.pre_execution_errors = errors
        yield


__all__ = [
    "DOCUMENT_TOO_LARGE",
    "QUERY_TOO_COMPLEX",
    "CachedDocuments",
    "DocumentCache",
    "DocumentRefused",
]


def _more_tokens_than(query: str, limit: int) -> bool:
    """Whether `query` holds more than `limit` tokens, counted as graphql-core's parser counts
    them for max_tokens (comments included). Asked only once parsing failed: graphql-core stops
    at the limit with a syntax error like any other (its message alone says which), so the count
    tells them apart."""
    lexer = Lexer(Source(query))
    token, count = lexer.token, 0
    try:
        while count <= limit:
            following = lexer.advance()
            between = token.next  # the comments the lexer stepped over, linked in between
            while between is not None and between is not following:
                count, between = count + 1, between.next
            if following.kind is TokenKind.EOF:
                break
            token, count = following, count + 1
    except GraphQLSyntaxError:
        return False  # a lexical error came first
    return count > limit
