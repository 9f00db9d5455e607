"""The document cache on its own (no server, no cluster): caps before parsing, a bound in bytes,
nothing kept for a caller who did not authenticate, each caller's documents apart, and one-off
documents never past probation."""

from __future__ import annotations

import time

import pytest
from graphql import GraphQLSyntaxError

from server.documents import PROBATION_ENTRIES, DocumentCache, DocumentRefused

ALICE = "alice:0:1"  # Identity.cache_key of an authenticated user
BOB = "bob:0:1"


def document(index: int, size: int) -> str:
    return f'{{ cluster(name: "{index:08d}{"x" * size}") {{ name }} }}'


def test_a_document_over_the_byte_cap_is_refused_before_the_lexer_reads_it() -> None:
    """A 50 MB document is refused (DOCUMENT_TOO_LARGE) in well under a millisecond a byte:
    nothing lexes it. The cap counts UTF-8 bytes, not characters."""
    documents = DocumentCache(max_bytes=1024)
    huge = document(1, 50_000_000)
    started = time.process_time()
    with pytest.raises(DocumentRefused) as refused:
        documents.parse(huge, owner=ALICE)
    assert time.process_time() - started < 0.05
    assert refused.value.error.extensions == {"code": "DOCUMENT_TOO_LARGE"}
    with pytest.raises(DocumentRefused):
        documents.parse("{ viewer { user } } # " + "é" * 510, owner=ALICE)  # 1,042 bytes
    assert len(documents) == 0


def test_parsing_stops_at_the_token_cap_comments_included() -> None:
    """Past max_tokens (comments count) the parse stops: QUERY_TOO_COMPLEX."""
    documents = DocumentCache(max_tokens=100)
    for text in ("{ " + "a " * 200 + "}", "{ a }\n" + "#c\n" * 200):
        with pytest.raises(DocumentRefused) as refused:
            documents.parse(text, owner=ALICE)
        assert refused.value.error.extensions == {"code": "QUERY_TOO_COMPLEX"}


def test_syntax_errors_stay_graphql_core_s_own() -> None:
    """A document within the caps that does not parse raises graphql-core's syntax error."""
    with pytest.raises(GraphQLSyntaxError):
        DocumentCache().parse("{ viewer ", owner=ALICE)


def test_the_cache_is_bounded_by_bytes_least_recently_used_out_first() -> None:
    """100 distinct 100 KB documents, each sent twice, in a 1 MiB cache: it never holds more
    than 1 MiB, and the one used last is still there."""
    documents = DocumentCache(capacity=1024 * 1024)
    first = document(0, 100_000)
    kept = documents.parse(first, owner=ALICE)
    assert documents.parse(first, owner=ALICE) is kept  # seen twice: kept
    for index in range(1, 100):
        for _ in range(2):
            documents.parse(document(index, 100_000), owner=ALICE)
        assert documents.size <= documents.capacity
        assert documents.parse(first, owner=ALICE) is kept  # used again: kept
    assert 1 < documents.kept < 10


def test_one_off_documents_never_leave_probation() -> None:
    """10,000 documents sent once each (ids written into the text, or an attacker's) keep at
    most PROBATION_ENTRIES, within a quarter of the capacity; the documents a dashboard repeats
    stay kept meanwhile."""
    documents = DocumentCache(capacity=1024 * 1024)
    dashboard = "{ cluster { jobs(first: 50) { totalCount } } }"
    kept = documents.parse(dashboard, owner=ALICE)
    assert documents.parse(dashboard, owner=ALICE) is kept
    for index in range(10_000):
        documents.parse(f'{{ cluster {{ job(id: "{index}") {{ name }} }} }}', owner=ALICE)
        assert documents.probation_size <= documents.capacity // 4
    assert documents.kept == 1 and len(documents) <= 1 + PROBATION_ENTRIES
    assert documents.parse(dashboard, owner=ALICE) is kept


def test_looking_up_the_operation_is_no_sighting() -> None:
    """operation() (the server reads which operation a request runs before it parses) does not
    count: a document one request both looks up and parses stays on probation."""
    documents = DocumentCache()
    text = document(1, 10)
    for _ in range(3):
        documents.operation(text, None, owner=ALICE)
    first = documents.parse(text, owner=ALICE)
    assert documents.kept == 0
    assert documents.parse(text, owner=ALICE) is first and documents.kept == 1


def test_callers_never_share_a_document_or_a_shape() -> None:
    """A timing oracle closed: what alice sent (parsed, validated, its shape) is never what
    answers bob, who parses and validates his own copy; alice's is still hers."""
    documents = DocumentCache()
    text = '{ cluster { job(id: "4711") { name } } }'
    alices = documents.parse(text, owner=ALICE)
    assert documents.parse(text, owner=ALICE) is alices  # seen twice: kept
    documents.remember_validation(text, alices, ALICE, [])
    documents.remember_shape('{ cluster { job(id: "0") { name } } }', ALICE)
    bobs = documents.parse(text, owner=BOB)
    assert bobs is not alices
    assert documents.validated(text, bobs, BOB) is None
    assert documents.validated(text, alices, BOB) is None
    assert not documents.shape_validated('{ cluster { job(id: "0") { name } } }', BOB)
    assert documents.parse(text, owner=ALICE) is alices
    assert documents.validated(text, alices, ALICE) == []
    assert documents.shape_validated('{ cluster { job(id: "0") { name } } }', ALICE)


def test_nothing_is_kept_for_a_caller_who_did_not_authenticate() -> None:
    """owner=None parses and keeps nothing, nor reads what was kept for others; a later
    authenticated parse is kept."""
    documents = DocumentCache()
    text = document(1, 10)
    assert documents.parse(text, owner=None) is not documents.parse(text, owner=None)
    assert (len(documents), documents.size, documents.probation_size) == (0, 0, 0)
    kept = documents.parse(text, owner=ALICE)
    assert documents.parse(text, owner=ALICE) is kept
    assert documents.parse(text, owner=None) is not kept
    assert documents.kept == 1


def test_the_selected_operation_is_read_within_the_caps() -> None:
    """operation() names the selected operation; a refused or broken document selects none."""
    documents = DocumentCache(max_bytes=1024)
    text = "query A { viewer { user } } subscription B { nodeEvents { kind } }"
    selected = documents.operation(text, "B", owner=None)
    assert selected is not None and (selected.type, selected.name) == ("subscription", "B")
    assert documents.operation(text, None, owner=None) is None  # two operations, no name
    assert documents.operation("subscription { x }" + " " * 2000, None, owner=None) is None
    assert documents.operation("{ viewer ", None, owner=None) is None
