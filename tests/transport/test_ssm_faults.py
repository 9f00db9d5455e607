"""ssm:// under every fault the service can show, each ending in its typed error."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3
import pytest

from server.settings import Settings
from tests.conftest import INSTANCE, Aws
from tests.support.app import app_client
from transport import (
    Command,
    HeadNodeNotFound,
    OutputTooLarge,
    TransportError,
    TransportThrottled,
    TransportUnavailable,
    open_transport,
)


async def run_once(url: str, command: Command) -> None:
    transport = open_transport(url)
    try:
        await transport.run([command])
    finally:
        await transport.aclose()


async def test_throttling_is_retried_then_typed(faults: Aws) -> None:
    """A few throttled calls are absorbed by retries; persistent throttling is typed."""
    faults.endpoint.set_faults(throttle=2)
    await run_once(faults.ssm_url(), Command(("true",)))
    faults.endpoint.set_faults(throttle=50)
    with pytest.raises(TransportThrottled):
        await run_once(faults.ssm_url(), Command(("true",)))


async def test_an_unknown_instance_is_unavailable(faults: Aws) -> None:
    """InvalidInstanceId from SendCommand is TransportUnavailable."""
    faults.endpoint.set_faults(unknown_instances=[INSTANCE])
    with pytest.raises(TransportUnavailable, match="not available"):
        await run_once(faults.ssm_url(), Command(("true",)))


async def test_an_undeliverable_command_is_unavailable(faults: Aws) -> None:
    """An agent that never picks the command up is TransportUnavailable."""
    faults.endpoint.set_faults(undeliverable=True)
    with pytest.raises(TransportUnavailable, match="not reachable"):
        await run_once(faults.ssm_url(), Command(("true",)))


async def test_large_output_without_a_bucket_is_output_too_large(aws: Aws) -> None:
    """Truncated output is never parsed: without a bucket it is OutputTooLarge naming the fix."""
    noise = Command(("head", "-c", "200000", "/dev/urandom"))
    with pytest.raises(OutputTooLarge, match=r"\?bucket="):
        await run_once(aws.ssm_url(bucket=False), noise)


async def test_a_failed_s3_write_is_not_parsed_truncated(faults: Aws) -> None:
    """When the full output could not be written to S3, the batch fails; nothing truncated."""
    faults.endpoint.set_faults(s3_failure=True)
    with pytest.raises(OutputTooLarge, match="could not be read from s3://"):
        await run_once(faults.ssm_url(), Command(("head", "-c", "200000", "/dev/urandom")))


@contextmanager
def head_node(cluster: str) -> Iterator[str]:
    """A running instance in moto's EC2, tagged as a ParallelCluster head node."""
    ec2 = boto3.client("ec2")
    try:
        image = ec2.describe_images()["Images"][0]["ImageId"]
        made = ec2.run_instances(
            ImageId=image,
            MinCount=1,
            MaxCount=1,
            TagSpecifications=[
                {
                    "ResourceType": "instance",
                    "Tags": [
                        {"Key": "parallelcluster:cluster-name", "Value": cluster},
                        {"Key": "parallelcluster:node-type", "Value": "HeadNode"},
                    ],
                }
            ],
        )
        instance = made["Instances"][0]["InstanceId"]
        try:
            yield instance
        finally:
            ec2.terminate_instances(InstanceIds=[instance])
    finally:
        ec2.close()


async def test_a_cluster_name_finds_its_head_node(aws: Aws) -> None:
    """ssm://?cluster=NAME looks the head node up by its ParallelCluster tags."""
    with head_node("hpc-prod") as instance:
        transport = open_transport(aws.ssm_url(target="cluster=hpc-prod"))
        try:
            [result] = await transport.run([Command(("echo", "hello"))])
            assert result.stdout == "hello\n"
            assert transport.url == "ssm://?cluster=hpc-prod"
        finally:
            await transport.aclose()
        assert instance.startswith("i-")


async def test_a_cluster_with_no_head_node_is_cluster_unavailable(aws: Aws) -> None:
    """No tagged head node: HeadNodeNotFound, and CLUSTER_UNAVAILABLE naming it in the API."""
    url = aws.ssm_url(target="cluster=nowhere")
    with pytest.raises(HeadNodeNotFound, match="nowhere"):
        await run_once(url, Command(("true",)))
    async with app_client(Settings(clusters=(("nowhere", url),), cache_ttl=0.0)) as client:
        body = (
            await client.post("/graphql", json={"query": "{ cluster { jobs { totalCount } } }"})
        ).json()
    assert body["errors"][0]["extensions"]["code"] == "CLUSTER_UNAVAILABLE"
    assert "nowhere" in body["errors"][0]["message"]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ssm://i-xyz?region=us-east-1", "not an EC2 instance id"),
        ("ssm://i-0123456789abcdef0/path?region=us-east-1", "not a path"),
        ("ssm://?region=us-east-1", "instance id"),
        ("ssm://i-0123456789abcdef0?region=mars-north-1", "unknown AWS region"),
        ("ssm://i-0123456789abcdef0?region=us-east-1&colour=blue", "unknown transport option"),
    ],
)
def test_bad_urls_fail_at_startup(aws: Aws, url: str, message: str) -> None:
    """Malformed ssm:// URLs and unknown regions are refused when the transport opens."""
    with pytest.raises(ValueError, match=message):
        open_transport(url)


def test_missing_credentials_fail_at_startup(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no credentials anywhere, opening the transport says so (names no secret)."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    with pytest.raises(ValueError, match="no AWS credentials"):
        open_transport(aws.ssm_url())


async def test_hostile_input_through_the_api_runs_nothing(aws: Aws, tmp_path: Path) -> None:
    """Hostile job ids are refused before any SendCommand; hostile names never reach a shell."""
    canary = tmp_path / "canary"
    transport = open_transport(aws.ssm_url())
    aws.endpoint.reset_stats()
    bad_id = f"1; touch {canary}"
    bad_name = f"$(touch {canary})`touch {canary}`'; touch {canary}; '"
    try:
        async with app_client(Settings(cache_ttl=0.0), {"local": transport}) as client:
            refused = await client.post(
                "/graphql",
                json={"query": "query($id: String!) { cluster { job(id: $id) { displayId } } }",
                      "variables": {"id": bad_id}},
            )  # fmt: skip
            assert refused.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
            assert aws.endpoint.stats().get("SendCommand", 0) == 0
            listed = await client.post(
                "/graphql",
                json={"query": "query($n: String!) { cluster { jobs(filter: {names: [$n]}) "
                      "{ totalCount } } }", "variables": {"n": bad_name}},
            )  # fmt: skip
            assert listed.json()["data"]["cluster"]["jobs"]["totalCount"] == 0
    finally:
        await transport.aclose()
    assert not canary.exists()


async def test_a_replaced_head_node_is_found_again(faults: Aws) -> None:
    """When the head node is replaced, the next batch finds the new one by its tags."""
    with head_node("rolling") as first:
        transport = open_transport(faults.ssm_url(target="cluster=rolling"))
        try:
            [before] = await transport.run([Command(("echo", "first"))])
            with head_node("rolling") as second:
                # The old instance is gone: SSM no longer knows it.
                boto3_ec2 = boto3.client("ec2")
                boto3_ec2.terminate_instances(InstanceIds=[first])
                boto3_ec2.close()
                faults.endpoint.set_faults(unknown_instances=[first])
                [after] = await transport.run([Command(("echo", "second"))])
                assert second != first
        finally:
            await transport.aclose()
    assert (before.stdout, after.stdout) == ("first\n", "second\n")


async def test_a_command_cancelled_on_the_service_is_an_error(aws: Aws) -> None:
    """Someone cancels the invocation in SSM: the batch fails with a TransportError, typed."""
    transport = open_transport(aws.ssm_url(timeout=30))
    try:
        running = asyncio.ensure_future(transport.run([Command(("sleep", "30"))]))
        ssm = boto3.client("ssm")
        try:
            command_id = None
            for _ in range(100):
                await asyncio.sleep(0.1)
                listed = ssm.list_command_invocations(InstanceId=INSTANCE)["CommandInvocations"]
                pending = [i for i in listed if i["Status"] in ("Pending", "InProgress")]
                if pending:
                    command_id = pending[0]["CommandId"]
                    break
            assert command_id is not None
            ssm.cancel_command(CommandId=command_id)
        finally:
            ssm.close()
        with pytest.raises(TransportError, match="Cancelled"):
            await running
    finally:
        await transport.aclose()
