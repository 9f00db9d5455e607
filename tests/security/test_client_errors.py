"""Bad input is answered as the client's error: 4xx or a typed code, never a server fault.

A malicious caller sends bodies that are not UTF-8, not JSON, nested beyond any parser, of the
wrong JSON shape, variables of the wrong type, values that pass a validator only up to a trailing
newline, and text holding lone surrogates; each is refused with a code, and nothing reaches the head
node for it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from resolvers.identity import validate_user_name
from resolvers.ids import validate_job_id, validate_name
from resolvers.slurm.actions import CONTROL_JOB_ID
from resolvers.slurm.job_fields import InvalidSubmission, slurm_names, validate_key
from resolvers.slurm.job_update import validate_signal
from resolvers.slurm.sbatch import SubmitRequest, sbatch_arguments
from schema import MESSAGE_LIMIT
from server.app import create_app
from server.lambda_app import make_handler
from server.packages import OWN_PACKAGES
from server.settings import Settings, parse_clusters
from server.tokens import parse_token_map
from tests.conftest import TOKENS, UserApi
from tests.support.counting import CountingTransport
from tests.support.lambda_events import (
    KINDS,
    LambdaRuntime,
    event,
    response_body,
    response_headers,
)
from tests.support.ws import LEGACY_WS, TRANSPORT_WS, Connection, serving
from transport.base import Command
from transport.local import LocalTransport
from transport.shell_batch import shell_line

ALICE = {"Authorization": "Bearer alice-token", "Content-Type": "application/json"}


async def as_alice(api: UserApi, query: str, **variables: Any) -> dict[str, Any]:
    """POST as alice with ASCII-escaped JSON, so lone surrogates travel as `\\ud800` escapes
    (what an attacker sends; httpx's own encoder would refuse them)."""
    payload = json.dumps({"query": query, "variables": variables})
    response = await api.client.post("/graphql", content=payload, headers=ALICE)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


MALFORMED_BODIES = {
    "invalid UTF-8": b'{"query": "{ cluster { name } }\xff\xfe"}',
    "not JSON": b"{query: cluster}",
    "nested too deeply": b"[" * 200_000 + b"]" * 200_000,
    "a JSON string": b'"{ cluster { name } }"',
    "a JSON number": b"42",
    "a list of numbers": b"[1, 2]",
    "query not a string": b'{"query": {"a": 1}}',
    "variables not an object": b'{"query": "{ cluster { name } }", "variables": [1]}',
    "no query": b'{"variables": {}}',
}


@pytest.mark.parametrize("case", MALFORMED_BODIES)
async def test_malformed_bodies_get_a_coded_400(user_api: UserApi, case: str) -> None:
    """Each malformed body gets 400 with a JSON body coded BAD_REQUEST, and runs nothing."""
    before = user_api.transport.calls
    response = await user_api.client.post("/graphql", content=MALFORMED_BODIES[case], headers=ALICE)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/json"
    [error] = response.json()["errors"]
    assert error["extensions"] == {"code": "BAD_REQUEST"}
    assert user_api.transport.calls == before


async def test_a_get_with_malformed_variables_gets_a_coded_400(user_api: UserApi) -> None:
    """Variables in a GET query string are parsed the same way: 400 BAD_REQUEST."""
    response = await user_api.client.get(
        "/graphql",
        params={"query": "{ cluster { name } }", "variables": "{not json"},
        headers={"Authorization": "Bearer alice-token", "Accept": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"] == {"code": "BAD_REQUEST"}


MISTYPED = [
    ("query ($n: Int) { cluster { jobs(first: $n) { totalCount } } }", {"n": "x"}),
    ("query ($n: Int) { cluster { jobs(first: $n) { totalCount } } }", {"n": 2**40}),
    ("query ($n: Int!) { cluster { jobs(first: $n) { totalCount } } }", {}),
    ("query ($n: Int!) { cluster { jobs(first: $n) { totalCount } } }", {"n": None}),
    ("query ($id: String!) { cluster { job(id: $id) { displayId } } }", {"id": {"$gt": ""}}),
    (
        "mutation ($i: SubmitJobInput!) { submitJob(input: $i) { __typename } }",
        {"i": {"script": "#!/bin/sh\ntrue\n", "ntasks": "four"}},
    ),
    (
        "mutation ($i: SubmitJobInput!) { submitJob(input: $i) { __typename } }",
        {"i": {"script": "#!/bin/sh\ntrue\n", "noSuchOption": True}},
    ),
]


@pytest.mark.parametrize(("query", "variables"), MISTYPED)
async def test_mistyped_variables_are_bad_user_input(
    user_api: UserApi, query: str, variables: dict[str, Any]
) -> None:
    """A variable that does not fit its declared type is BAD_USER_INPUT (with graphql-core's
    own explanation), not a masked internal error; nothing runs."""
    before = user_api.transport.calls
    body = await user_api.as_user("alice", query, **variables)
    assert body["data"] is None
    [error] = body["errors"]
    assert error["extensions"] == {"code": "BAD_USER_INPUT"}, error
    assert error["message"].startswith("Variable '$")
    assert user_api.transport.calls == before


# Validators and a value each accepts: the same value with a trailing newline must be refused.
VALIDATORS: dict[str, tuple[Callable[[str], object], str]] = {
    "job id": (validate_job_id, "42_3"),
    "user name": (validate_user_name, "alice"),
    "slurm name": (lambda v: slurm_names(("Partition", "partition", v)), "batch"),
    "client mutation id": (validate_key, "retry-0001"),
    "node name": (lambda v: validate_name("node", v), "n1"),
    "control job id": (lambda v: _control_id(v), "42_3"),
    "shell user": (lambda v: shell_line(Command(("true",), user=v)), "alice"),
    "cluster list": (lambda v: parse_clusters(f"{v}=local://"), "local"),
}


def _control_id(value: str) -> str:
    # As resolvers/mutations.py checks an id before any control action.
    if not CONTROL_JOB_ID.match(value):
        raise ValueError(f"{value!r} refused")
    return value


@pytest.mark.parametrize("name", VALIDATORS)
def test_validators_match_the_whole_value(name: str) -> None:
    """A validator accepts its value, and refuses it with a newline (or more) after it."""
    validate, good = VALIDATORS[name]
    validate(good)
    for bad in (good + "\n", good + "\nrm -rf /", good + "\r\n", good + "\ud800"):
        # Every refusal here is a ValueError subclass (BadUserInput, InvalidSubmission, ...).
        with pytest.raises(ValueError):  # noqa: PT011
            validate(bad)


# Digits of other scripts: Python's \\d and int() take them, Slurm's strtol does not, so an id
# or number a validator let through could mean one thing to the API and another to Slurm.
FOREIGN_DIGITS = {
    "job id": (validate_job_id, "\u0664\u0662"),  # Arabic-Indic 42
    "job id, array task": (validate_job_id, "42_\u0663"),
    "control job id": (_control_id, "\uff14\uff12"),  # fullwidth 42
    "array spec": (
        lambda v: sbatch_arguments(SubmitRequest(script="#!/bin/sh\ntrue\n", array=v)),
        "\u0660-\u0669",
    ),
    "signal": (validate_signal, "\u0669"),
}


@pytest.mark.parametrize("name", FOREIGN_DIGITS)
def test_validators_take_ascii_digits_only(name: str) -> None:
    validate, bad = FOREIGN_DIGITS[name]
    with pytest.raises(ValueError):  # noqa: PT011
        validate(bad)


SUBMIT_TAILS = {
    "partition": "batch",
    "array": "1-3",
    "gres": "gpu:1",
    "constraint": "fast",
    "clientMutationId": "key-1",
}


def _submission(field: str, value: str) -> SubmitRequest:
    fields = {
        "partition": "partition",
        "array": "array",
        "gres": "gres",
        "constraint": "constraint",
        "clientMutationId": "client_mutation_id",
    }
    return SubmitRequest(script="#!/bin/sh\ntrue\n", **{fields[field]: value})  # type: ignore[arg-type]  # keyword chosen by field name


@pytest.mark.parametrize("field", SUBMIT_TAILS)
def test_submission_values_with_a_trailing_newline_are_refused(field: str) -> None:
    """Every grammar-checked submit option refuses its valid value followed by a newline."""
    sbatch_arguments(_submission(field, SUBMIT_TAILS[field]))
    with pytest.raises(InvalidSubmission) as refused:
        sbatch_arguments(_submission(field, SUBMIT_TAILS[field] + "\n"))
    assert refused.value.field == field


def test_extra_option_values_match_whole() -> None:
    """Allow-listed extra sbatch options check the whole value too (`nice: "5\\n"`)."""
    request = SubmitRequest(script="#!/bin/sh\ntrue\n", extra_options=(("nice", "5"),))
    sbatch_arguments(request)
    with pytest.raises(InvalidSubmission):
        sbatch_arguments(
            SubmitRequest(script="#!/bin/sh\ntrue\n", extra_options=(("nice", "5\n"),))
        )


SUBMIT = """mutation ($i: SubmitJobInput!) {
  submitJob(input: $i) {
    __typename
    ... on SubmitRejected { code field message }
    ... on JobSubmitted { job { displayId } }
  }
}"""


@pytest.mark.parametrize(
    "tail_case",
    [
        ("partition", "batch\n"),
        ("clientMutationId", "key-1\n"),
        ("name", "\ud800"),
        ("comment", "ok \udfff"),
        ("stdoutPath", "/tmp/\ud800.out"),
        ("script", "#!/bin/sh\necho \ud83d\n"),
    ],
    ids=lambda case: case[0],
)
async def test_bad_text_is_refused_by_field_and_submits_nothing(
    user_api: UserApi, tail_case: tuple[str, str]
) -> None:
    """A trailing newline in a grammar-checked value, or a lone surrogate in free text (JSON's
    `\\ud800`), is an INVALID_INPUT rejection naming the field: no internal error, no command."""
    field, value = tail_case
    inputs: dict[str, Any] = {"script": "#!/bin/sh\ntrue\n", "hold": True, field: value}
    before = user_api.transport.calls
    body = await as_alice(user_api, SUBMIT, i=inputs)
    assert "errors" not in body, body
    rejected = body["data"]["submitJob"]
    assert rejected["__typename"] == "SubmitRejected"
    assert (rejected["code"], rejected["field"]) == ("INVALID_INPUT", field)
    assert user_api.transport.calls == before


NAMES_QUERY = "query ($n: [String!]) { cluster { jobs(filter: { names: $n }) { totalCount } } }"


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        ('{ cluster { job(id: "42\\n") { displayId } } }', {}),
        ('{ cluster { jobs(filter: { ids: ["42\\n"] }) { totalCount } } }', {}),
        (NAMES_QUERY, {"n": ["\ud800"]}),
        (NAMES_QUERY, {"n": ["bad\nname"]}),
    ],
)
async def test_query_arguments_with_bad_text_are_bad_user_input(
    user_api: UserApi, query: str, variables: dict[str, Any]
) -> None:
    """Query arguments are held to the same rules: BAD_USER_INPUT, nothing run."""
    before = user_api.transport.calls
    body = await as_alice(user_api, query, **variables)
    [error] = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    assert user_api.transport.calls == before


async def test_a_control_id_with_a_trailing_newline_is_refused(user_api: UserApi) -> None:
    """`cancelJob(id: "42\\n")` is refused as input before anything runs."""
    before = user_api.transport.calls
    body = await user_api.as_user(
        "alice",
        'mutation { cancelJob(id: "42\\n") { ... on JobActionRejected { code field } } }',
    )
    assert body["data"]["cancelJob"] == {"code": "INVALID_INPUT", "field": "id"}
    assert user_api.transport.calls == before


@pytest.fixture
def lambda_runtime(slurm_cluster: str) -> Iterator[tuple[LambdaRuntime, CountingTransport]]:
    transport = CountingTransport(LocalTransport())
    settings = Settings(
        clusters=(("local", "local://"),), cache_ttl=0, tokens=parse_token_map(TOKENS)
    )
    runtime = LambdaRuntime(lambda: make_handler(settings, {"local": transport}))
    try:
        yield runtime, transport
    finally:
        runtime.close()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", ["invalid UTF-8", "nested too deeply", "a JSON string"])
def test_malformed_lambda_bodies_get_a_coded_400(
    lambda_runtime: tuple[LambdaRuntime, CountingTransport], kind: str, case: str
) -> None:
    """Through the Lambda handler (base64 bodies, as API Gateway sends binary), the same 400."""
    runtime, transport = lambda_runtime
    response = runtime.invoke(
        event(
            kind,
            "POST",
            "/graphql",
            headers=ALICE,
            body=MALFORMED_BODIES[case],
            base64_body=True,
        )
    )
    assert response["statusCode"] == 400, response
    assert response_headers(response)["content-type"] == "application/json"
    [error] = json.loads(response_body(response))["errors"]
    assert error["extensions"] == {"code": "BAD_REQUEST"}
    assert transport.calls == 0


def test_no_validator_pattern_ends_in_a_bare_dollar() -> None:
    """Source check backing the tests above: no compiled validator ends with `$` (which also
    matches before a final newline); they end with `\\Z` or are used with fullmatch."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    offenders = []
    for package in OWN_PACKAGES:
        for path in (root / package).rglob("*.py"):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if "re.compile(" in line and re.search(r'\$["|)]', line):
                    offenders.append(f"{path.relative_to(root)}:{number}")
    assert offenders == []


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_mistyped_variables_are_bad_user_input_over_websockets(
    slurm_cluster: str, protocol: str
) -> None:
    """Over a WebSocket too, where no HTTP response is post-processed: the executor codes the
    errors that stop it being built (a variable's, an unknown operation's) where they arise."""
    app = create_app(Settings(cache_ttl=0.0))
    query = "subscription ($id: String!) { jobStateChanged(id: $id) { kind } }"
    async with serving(app) as url, Connection.open(url, protocol) as connection:
        subscription = await connection.subscribe(query, id=42)
        message = await subscription.next()
    assert message.kind == "error", message
    errors = message.payload if isinstance(message.payload, list) else [message.payload]
    assert [error["extensions"]["code"] for error in errors] == ["BAD_USER_INPUT"], errors


# A caller's 20 KB of text in the places graphql-core quotes it: a variable's value, an argument.
ECHOED = "A" * 20_000 + "\n<script>"
ECHOING = [
    (
        "query ($s: [JobState!]) { cluster { jobs(filter: {states: $s}) { totalCount } } }",
        {"s": [ECHOED]},
    ),
    ('{ cluster { jobs(filter: {states: ["' + ECHOED[:-9] + '"]}) { totalCount } } }', {}),
    ("query ($n: Int) { cluster { jobs(first: $n) { totalCount } } }", {"n": ECHOED}),
]


def assert_clipped(errors: list[dict[str, Any]]) -> None:
    assert errors
    for error in errors:
        assert len(error["message"]) <= MESSAGE_LIMIT + 40, len(error["message"])
        assert error["message"].endswith("more characters)"), error["message"][-80:]
        assert "<script>" not in error["message"]


@pytest.mark.parametrize(("query", "variables"), ECHOING)
async def test_errors_quote_a_callers_text_clipped(
    user_api: UserApi, query: str, variables: dict[str, Any]
) -> None:
    """graphql-core quotes the offending value in its message: an answer never echoes a
    caller's kilobytes back (nor into the log), over POST and GET alike; nothing runs."""
    before = user_api.transport.calls
    body = await as_alice(user_api, query, **variables)
    assert_clipped(body["errors"])
    response = await user_api.client.get(
        "/graphql",
        params={"query": query, "variables": json.dumps(variables)},
        headers={"Authorization": "Bearer alice-token", "Accept": "application/json"},
    )
    assert_clipped(response.json()["errors"])
    assert user_api.transport.calls == before


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_errors_quote_a_callers_text_clipped_over_websockets(
    slurm_cluster: str, protocol: str
) -> None:
    app = create_app(Settings(cache_ttl=0.0))
    query = "subscription ($id: String!) { jobStateChanged(id: $id) { kind } }"
    async with serving(app) as url, Connection.open(url, protocol) as connection:
        subscription = await connection.subscribe(query, id=[ECHOED])
        message = await subscription.next()
    assert message.kind == "error", message
    assert_clipped(message.payload if isinstance(message.payload, list) else [message.payload])
