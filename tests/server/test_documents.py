"""The document cache on its own (no server, no cluster): caps before parsing, a bound in bytes,
and nothing kept for a caller who did not authenticate."""

from __future__ import annotations

import time

import pytest
from graphql import GraphQLSyntaxError

from server.documents import DocumentCache, DocumentRefused


def document(index: int, size: int) -> str:
    return f'{{ cluster(name: "{index:08d}{"x" * size}") {{ name }} }}'


def test_a_document_over_the_byte_cap_is_refused_before_the_lexer_reads_it() -> None:
    """A 50 MB document is refused (DOCUMENT_TOO_LARGE) in well under a millisecond a byte:
    nothing lexes it. The cap counts UTF-8 bytes, not characters."""
    documents = DocumentCache(max_bytes=1024)
    huge = document(1, 50_000_000)
    started = time.process_time()
    with pytest.raises(DocumentRefused) as refused:
        documents.parse(huge, keep=True)
    assert time.process_time() - started < 0.05
    assert refused.value.error.extensions == {"code": "DOCUMENT_TOO_LARGE"}
    with pytest.raises(DocumentRefused):
        documents.parse("{ viewer { user } } # " + "é" * 510, keep=True)  # 1,042 bytes
    assert len(documents) == 0


def test_parsing_stops_at_the_token_cap_comments_included() -> None:
    """Past max_tokens (comments count) the parse stops: QUERY_TOO_COMPLEX."""
    documents = DocumentCache(max_tokens=100)
    for text in ("{ " + "a " * 200 + "}", "{ a }\n" + "#c\n" * 200):
        with pytest.raises(DocumentRefused) as refused:
            documents.parse(text, keep=True)
        assert refused.value.error.extensions == {"code": "QUERY_TOO_COMPLEX"}


def test_syntax_errors_stay_graphql_core_s_own() -> None:
    """A document within the caps that does not parse raises graphql-core's syntax error."""
    with pytest.raises(GraphQLSyntaxError):
        DocumentCache().parse("{ viewer ", keep=True)


def test_the_cache_is_bounded_by_bytes_least_recently_used_out_first() -> None:
    """100 distinct 100 KB documents in a 1 MiB cache: it never holds more than 1 MiB, and
    the one used last is still there."""
    documents = DocumentCache(capacity=1024 * 1024)
    first = document(0, 100_000)
    kept = documents.parse(first, keep=True)
    for index in range(1, 100):
        documents.parse(document(index, 100_000), keep=True)
        assert documents.size <= documents.capacity
        assert documents.parse(first, keep=True) is kept  # used again: kept
    assert 1 < len(documents) < 10


def test_nothing_is_kept_for_a_caller_who_did_not_authenticate() -> None:
    """keep=False parses and keeps nothing; a later authenticated parse is kept."""
    documents = DocumentCache()
    text = document(1, 10)
    assert documents.parse(text, keep=False) is not documents.parse(text, keep=False)
    assert (len(documents), documents.size) == (0, 0)
    assert documents.parse(text, keep=True) is documents.parse(text, keep=False)
    assert len(documents) == 1


def test_the_selected_operation_is_read_within_the_caps() -> None:
    """operation() names the selected operation; a refused or broken document selects none."""
    documents = DocumentCache(max_bytes=1024)
    text = "query A { viewer { user } } subscription B { nodeEvents { kind } }"
    selected = documents.operation(text, "B", keep=False)
    assert selected is not None and (selected.type, selected.name) == ("subscription", "B")
    assert documents.operation(text, None, keep=False) is None  # two operations, no name
    assert documents.operation("subscription { x }" + " " * 2000, None, keep=False) is None
    assert documents.operation("{ viewer ", None, keep=False) is None
