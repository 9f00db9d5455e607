"""Documents that differ only in their strings validate alike: one validation serves them all.

A frontend opening jobs one by one sends `job(id: "4711")`, then `job(id: "4712")`: as many
documents as jobs, and graphql-core's validation (about 30 rules over the whole document, 2-5 ms
for that small query here) cost more than answering from a snapshot. Where every string literal
sits in a position of type String or ID, graphql-core's rules read a string only to compare it
with another string (two fields merged under one name must have equal arguments), so a
document's validity is a function of its *shape*: its text with each string literal replaced by
the number of its distinct value, in order of first appearance (`job(id: "0")`). A shape that
validated without errors once is remembered; a later document of that shape skips validation.

Not reused: documents with errors (messages and locations name the document's own values), and
any document with a string where content matters (a custom scalar such as DateTime or Long parses
it; an enum position). Shapes are kept with the parsed documents (server/documents.py), within a
byte budget, for the callers whose documents are kept.
"""

from __future__ import annotations

from graphql import (
    BREAK,
    DocumentNode,
    GraphQLSchema,
    StringValueNode,
    TypeInfo,
    TypeInfoVisitor,
    Visitor,
    get_named_type,
    visit,
)
from graphql.language import Token, TokenKind

# Named input types whose every string literal is as valid as any other.
_FREE_TYPES = frozenset({"String", "ID"})


def shape_of(document: DocumentNode) -> str | None:
    """The document's source with string literals numbered by distinct value (a block string
    stays a block string, which graphql-core compares as different); None without a source."""
    location = document.loc
    if location is None:
        return None
    body = location.source.body
    pieces: list[str] = []
    numbers: dict[tuple[TokenKind, str], int] = {}
    copied = 0
    token: Token | None = location.start_token
    while token is not None:
        if token.kind in (TokenKind.STRING, TokenKind.BLOCK_STRING):
            number = numbers.setdefault((token.kind, token.value or ""), len(numbers))
            quote = '"""' if token.kind is TokenKind.BLOCK_STRING else '"'
            pieces.append(body[copied : token.start])
            pieces.append(f"{quote}{number}{quote}")
            copied = token.end
        token = token.next
    if not numbers:
        return None  # nothing to share: the document's own cache entry serves its repeats
    pieces.append(body[copied:])
    return "".join(pieces)


class _StringPositions(Visitor):
    def __init__(self, type_info: TypeInfo) -> None:
        super().__init__()
        self.type_info = type_info
        self.free = True

    def enter_string_value(self, node: StringValueNode, *_: object) -> object:
        expected = self.type_info.get_input_type()
        # No input type: a description, or an unknown argument (which fails validation anyway).
        if expected is not None and get_named_type(expected).name not in _FREE_TYPES:
            self.free = False
            return BREAK
        return None


def strings_are_free(schema: GraphQLSchema, document: DocumentNode) -> bool:
    """Whether every string literal of `document` sits where the schema takes a String or ID."""
    type_info = TypeInfo(schema)
    positions = _StringPositions(type_info)
    visit(document, TypeInfoVisitor(type_info, positions))
    return positions.free
