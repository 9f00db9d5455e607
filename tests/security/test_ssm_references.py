"""A client's `{{ssm:NAME}}` never makes Run Command read Parameter Store for it.

The attack these close: alice, logged in, submits a job named `{{ssm:/prod/api-key}}` over
`ssm://`. Run Command resolves the reference in SendCommand's parameters with the API role's
rights before the script reaches the head node, so the job was named after the secret, and alice
read it in the job's record. The local SSM endpoint resolves references as Run Command does
(tests/support/parameter_store.py), from parameters put through boto3, so each test can fail.
Every string a client can send that reaches a command is tried, with the variants Run Command
accepts; the secret must appear nowhere alice or anyone can look: the mutation's answer, the job's
record, its output, errors and the audit trail. The job must keep exactly what alice sent.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any

import boto3
import pytest

from tests.conftest import BUCKET, Aws
from tests.server.test_mutations import scancel
from tests.server.test_submit_from_s3 import alice_aws_credentials  # noqa: F401 - a fixture
from tests.support.audit import audit_lines
from tests.support.head_node import App, running_app
from transport import open_transport

if TYPE_CHECKING:
    from mypy_boto3_ssm import SSMClient

pytestmark = pytest.mark.cluster

# The parameters an operator keeps next to the API (values unique to this run).
API_KEY = "prod-api-key-" + secrets.token_hex(8)
DB_PASSWORD = "prod-db-password-" + secrets.token_hex(8)
REFERENCES = {
    "ssm": "{{ssm:/prod/api-key}}",
    "spaced": "{{ ssm:/prod/api-key }}",
    "secure": "{{ssm-secure:/prod/db-password}}",
}
HEAD_NODE_AWS_CLI = "/opt/slurm-graphql/aws-cli/bin/aws"
PASS_ENV = ("AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION", "AWS_EC2_METADATA_DISABLED")
HELD = {"script": "#!/bin/sh\ntrue\n", "hold": True, "partition": "batch"}
RECORD = """displayId name comment workDir stdoutPath stderrPath command state reason"""
SUBMIT = f"""mutation($input: SubmitJobInput!) {{ submitJob(input: $input) {{
  __typename
  ... on JobSubmitted {{ job {{ {RECORD} }} }}
  ... on SubmitRejected {{ code message field }}
}} }}"""
UPDATE = f"""mutation($id: String!, $input: UpdateJobInput!) {{ updateJob(id: $id, input: $input) {{
  __typename
  ... on JobActionDone {{ job {{ {RECORD} }} }}
  ... on JobActionRejected {{ code message field }}
}} }}"""
JOB = f"""query($id: String!) {{ cluster {{ job(id: $id) {{ {RECORD} output {{ text }} }} }} }}"""


@pytest.fixture(scope="module")
def parameter_store(aws: Aws) -> Iterator[None]:
    """/prod/api-key (String) and /prod/db-password (SecureString) in the endpoint's store,
    written with boto3's PutParameter through AWS_ENDPOINT_URL_SSM, as an operator would."""
    ssm: SSMClient = boto3.client("ssm")
    try:
        ssm.put_parameter(Name="/prod/api-key", Value=API_KEY, Type="String", Overwrite=True)
        ssm.put_parameter(
            Name="/prod/db-password", Value=DB_PASSWORD, Type="SecureString", Overwrite=True
        )
        yield
    finally:
        ssm.close()


@pytest.fixture
async def app(aws: Aws, parameter_store: None, unix_users: None) -> AsyncIterator[App]:
    """The app over ssm://, with the head node's AWS CLI for scripts in S3."""
    transport = open_transport(aws.ssm_url() + "&pass_env=" + ",".join(PASS_ENV))
    async with running_app(transport, "ssm", aws_cli=HEAD_NODE_AWS_CLI) as running:
        yield running


def leaks(*seen: Any) -> list[str]:
    """The secrets present in anything shown (answers, records, output, audit lines)."""
    text = json.dumps(seen, ensure_ascii=False, default=str)
    return [name for name, value in (("api-key", API_KEY), ("db-password", DB_PASSWORD))
            if value in text]  # fmt: skip


async def submitted(app: App, fields: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
    """alice submits `fields` (a held job unless they say otherwise): the answer, the audit."""
    with audit_lines() as audit:
        body = await app.as_user("alice", SUBMIT, input={**HELD, **fields})
    return body, audit


async def record(app: App, job_id: str) -> dict[str, Any]:
    body = await app.as_user("alice", JOB, id=job_id)
    assert "errors" not in body, body
    job: dict[str, Any] = body["data"]["cluster"]["job"]
    return job


def job_of(body: dict[str, Any]) -> dict[str, Any]:
    payload: dict[str, Any] = body["data"]["submitJob"]
    assert payload["__typename"] == "JobSubmitted", payload
    job: dict[str, Any] = payload["job"]
    return job


# Each free-text field of a submission, and the value holding a reference that alice sends in it.
FIELDS: dict[str, Callable[[str], str]] = {
    "name": lambda ref: ref,
    "comment": lambda ref: f"see {ref}",
    "workDir": lambda ref: f"/tmp/{ref}",
    "stdoutPath": lambda ref: f"/tmp/out-{ref}.log",
    "stderrPath": lambda ref: f"/tmp/err-{ref}.log",
}


@pytest.mark.parametrize("variant", sorted(REFERENCES))
@pytest.mark.parametrize("field", sorted(FIELDS))
async def test_a_reference_in_a_job_field_stays_literal(app: App, field: str, variant: str) -> None:
    """A reference in the job's name, comment, working directory or output paths is stored as
    sent; the secret is in neither the answer, the record nor the audit trail."""
    value = FIELDS[field](REFERENCES[variant])
    body, audit = await submitted(app, {field: value})
    job = job_of(body) if body.get("data", {}).get("submitJob") else {}
    try:
        shown = await record(app, job["displayId"]) if job else None
        assert leaks(body, shown, audit) == []
        assert job, body
        assert job[field] == value
    finally:
        if job:
            scancel(job["displayId"])


@pytest.mark.parametrize("variant", sorted(REFERENCES))
async def test_a_reference_in_an_update_stays_literal(app: App, variant: str) -> None:
    """updateJob with a reference as the new name and comment: stored as sent, no secret."""
    job = job_of((await submitted(app, {"name": "plain"}))[0])
    try:
        reference = REFERENCES[variant]
        with audit_lines() as audit:
            changes = {"name": reference, "comment": reference}
            body = await app.as_user("alice", UPDATE, id=job["displayId"], input=changes)
        shown = await record(app, job["displayId"])
        assert leaks(body, shown, audit) == []
        assert body["data"]["updateJob"]["__typename"] == "JobActionDone", body
        assert (shown["name"], shown["comment"]) == (reference, reference)
    finally:
        scancel(job["displayId"])


async def test_references_in_the_environment_and_script_reach_the_job_literally(
    app: App,
) -> None:
    """A job that prints its environment values and a reference in its script's text: its
    output holds the references, never the secrets."""
    script = '#!/bin/sh\nprintf \'%s\\n\' "$A" "$B" "$C" \'{{ssm:/prod/api-key}}\'\n'
    environment = [
        {"name": name, "value": REFERENCES[variant]}
        for name, variant in (("A", "ssm"), ("B", "spaced"), ("C", "secure"))
    ]
    body, audit = await submitted(
        app, {"script": script, "hold": False, "environment": environment, "name": "env"}
    )
    job = job_of(body)
    try:
        shown = await record(app, job["displayId"])
        for _ in range(300):
            if shown["state"] in ("COMPLETED", "FAILED") and shown["output"] is not None:
                break
            await asyncio.sleep(0.2)
            shown = await record(app, job["displayId"])
        assert leaks(body, shown, audit) == []
        assert shown["state"] == "COMPLETED", shown
        printed = [REFERENCES["ssm"], REFERENCES["spaced"], REFERENCES["secure"]]
        assert shown["output"]["text"].splitlines() == [*printed, REFERENCES["ssm"]]
    finally:
        scancel(job["displayId"])


async def test_a_reference_in_the_s3_key_fetches_that_very_key(
    app: App,
    alice_aws_credentials: None,  # noqa: F811 - the fixture imported above
) -> None:
    """scriptS3Uri `s3://bucket/scripts/{{ssm:/prod/api-key}}.sh` fetches the object of that
    literal key (which exists), not one named after the secret."""
    key = f"scripts/{secrets.token_hex(4)}/{REFERENCES['ssm']}.sh"
    s3 = boto3.client("s3")
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"#!/bin/sh\ntrue\n")
    s3.close()
    body, audit = await submitted(
        app, {"script": None, "scriptS3Uri": f"s3://{BUCKET}/{key}", "name": "from-s3"}
    )
    payload = body["data"]["submitJob"]
    try:
        assert leaks(body, audit) == []
        assert payload["__typename"] == "JobSubmitted", payload
    finally:
        if payload.get("job"):
            scancel(payload["job"]["displayId"])


async def test_validated_fields_refuse_references_before_anything_is_sent(
    app: App, aws: Aws
) -> None:
    """Partition, account, QOS, reservation, GRES, constraint, array, an extra option, the
    idempotency key and a dependency refuse a reference as INVALID_INPUT, with no SendCommand."""
    reference = REFERENCES["ssm"]
    fields: list[dict[str, Any]] = [
        {"partition": reference},
        {"account": reference},
        {"qos": reference},
        {"reservation": reference},
        {"gres": reference},
        {"constraint": reference},
        {"array": reference},
        {"extraOptions": [{"name": "mail-user", "value": reference}]},
        {"clientMutationId": reference},
        {"dependencies": [{"type": "AFTEROK", "jobIds": [reference]}]},
        {"environment": [{"name": reference, "value": "x"}]},
    ]
    before = aws.endpoint.stats().get("SendCommand", 0)
    for given in fields:
        body, audit = await submitted(app, given)
        assert leaks(body, audit) == []
        assert body["data"]["submitJob"]["code"] == "INVALID_INPUT", (given, body)
    assert aws.endpoint.stats().get("SendCommand", 0) == before


async def test_references_in_reads_and_anonymous_writes_run_nothing(app: App, aws: Aws) -> None:
    """A reference as a job id or a listing filter is BAD_USER_INPUT (or matches nothing), and an
    anonymous submitJob holding one is 401: no SendCommand carries it, no secret comes back."""
    reference = REFERENCES["ssm"]
    answers = [
        await app.as_user("alice", JOB, id=reference),
        await app.as_user(
            "alice",
            "query($n: [String!]) { cluster { jobs(filter: {names: $n}) { totalCount } } }",
            n=[reference],
        ),
    ]
    before = aws.endpoint.stats().get("SendCommand", 0)
    with audit_lines() as audit:
        anonymous = await app.client.post(
            "/graphql", json={"query": SUBMIT, "variables": {"input": {**HELD, "name": reference}}}
        )
    assert anonymous.status_code == 401
    assert aws.endpoint.stats().get("SendCommand", 0) == before
    assert leaks(answers, anonymous.text, audit) == []


def test_the_parameters_really_resolve(aws: Aws, parameter_store: None) -> None:
    """The control: the same endpoint, sent the references bare, answers with the secrets (so
    the tests above would see a leak)."""
    ssm = boto3.client("ssm")
    try:
        sent = ssm.send_command(
            InstanceIds=["i-0123456789abcdef0"],
            DocumentName="AWS-RunShellScript",
            Parameters={"commands": [f"echo {REFERENCES['ssm']} {REFERENCES['secure']}"]},
        )["Command"]["CommandId"]
        for _ in range(100):
            try:
                result = ssm.get_command_invocation(
                    CommandId=sent, InstanceId="i-0123456789abcdef0"
                )
                if result["Status"] == "Success":
                    break
            except ssm.exceptions.InvocationDoesNotExist:
                pass
            time.sleep(0.1)
        assert result["StandardOutputContent"].split() == [API_KEY, DB_PASSWORD]
    finally:
        ssm.close()
