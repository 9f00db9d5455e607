"""Scripts submitted from S3: fetched on the head node by its AWS CLI, as the submitting user,
with the user's own AWS credentials (their ~/.aws) and nothing of the server's."""

from __future__ import annotations

import asyncio
import os
import pwd
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from server.app import create_app
from server.settings import Settings
from server.tokens import parse_token_map
from tests.conftest import BUCKET, TOKENS, Aws
from tests.server.test_mutations import SUBMIT, scancel
from transport import Transport, open_transport
from transport.local import LocalTransport

pytestmark = pytest.mark.cluster

# Installed by scripts/install-system-deps where every user can run it, as on a head node.
HEAD_NODE_AWS_CLI = "/opt/slurm-graphql/aws-cli/bin/aws"
OUTPUT = """query($id: String!) { cluster { job(id: $id) { state output { text } } } }"""
# Where the head node's S3 is (moto's, here): passed to commands by name, as an operator would.
PASS_ENV = ("AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION", "AWS_EC2_METADATA_DISABLED")


@pytest.fixture
def alice_aws_credentials(unix_users: None) -> Iterator[None]:
    """alice's own AWS credentials in her ~/.aws, as a user of a real head node would keep
    them (moto accepts any key); removed afterwards."""
    account = pwd.getpwnam("alice")
    folder = Path(account.pw_dir) / ".aws"
    folder.mkdir(mode=0o700, exist_ok=True)
    credentials = folder / "credentials"
    credentials.write_text("[default]\naws_access_key_id = alice\naws_secret_access_key = a\n")
    for path in (folder, credentials):
        os.chown(path, account.pw_uid, account.pw_gid)
    credentials.chmod(0o600)
    try:
        yield
    finally:
        credentials.unlink(missing_ok=True)


@pytest.fixture(params=["local", "ssm"])
async def client(
    request: pytest.FixtureRequest, aws: Aws, alice_aws_credentials: None
) -> AsyncIterator[httpx.AsyncClient]:
    """The app with the head node's AWS CLI configured, through each transport, passing the S3
    endpoint's variables by name (`?pass_env=`). The local one is opened once the test S3's
    variables are in the environment it takes them from."""
    inner: Transport = (
        LocalTransport(pass_env=PASS_ENV)
        if request.param == "local"
        else open_transport(aws.ssm_url() + "&pass_env=" + ",".join(PASS_ENV))
    )
    settings = Settings(cache_ttl=0.0, tokens=parse_token_map(TOKENS), aws_cli=HEAD_NODE_AWS_CLI)
    app = create_app(settings, transports={"local": inner})
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),
                base_url="http://localhost",
                headers={"Authorization": "Bearer alice-token"},
            ) as http,
        ):
            yield http
    finally:
        await inner.aclose()


async def run(client: httpx.AsyncClient, query: str, **variables: Any) -> dict[str, Any]:
    response = await client.post("/graphql", json={"query": query, "variables": variables})
    body: dict[str, Any] = response.json()
    assert "errors" not in body, body
    data: dict[str, Any] = body["data"]
    return data


async def test_a_script_from_s3_runs_as_the_user(client: httpx.AsyncClient) -> None:
    """The job runs the object's script, as alice; a missing object is an INVALID_INPUT on
    scriptS3Uri with the CLI's own message, and nothing is submitted."""
    key = f"scripts/{secrets.token_hex(6)}.sh"
    script = b'#!/bin/sh\necho "from s3 as $(id -un)"\n' + b"# padding\n" * 4000
    s3 = boto3.client("s3")
    s3.put_object(Bucket=BUCKET, Key=key, Body=script)
    s3.close()
    payload = (
        await run(
            client, SUBMIT, input={"scriptS3Uri": f"s3://{BUCKET}/{key}", "partition": "batch"}
        )
    )["submitJob"]
    assert payload["__typename"] == "JobSubmitted", payload
    job_id = payload["job"]["displayId"]
    try:
        assert payload["job"]["user"] == "alice"
        for _ in range(150):
            job = (await run(client, OUTPUT, id=job_id))["cluster"]["job"]
            if job["state"] == "COMPLETED" and job["output"] is not None:
                break
            await asyncio.sleep(0.2)
        assert job["output"]["text"] == "from s3 as alice\n"
    finally:
        scancel(job_id)
    missing = (await run(client, SUBMIT, input={"scriptS3Uri": f"s3://{BUCKET}/nope.sh"}))[
        "submitJob"
    ]
    assert (missing["code"], missing["field"]) == ("INVALID_INPUT", "scriptS3Uri"), missing
    assert "404" in missing["message"] or "Not Found" in missing["message"], missing
    both = (await run(client, SUBMIT, input={"script": "#!/bin/sh\n", "scriptS3Uri": "s3://b/k"}))[
        "submitJob"
    ]
    assert (both["code"], both["field"]) == ("INVALID_INPUT", "script")
