"""The local SSM endpoint, seen through real boto3 clients as the `ssm://` transport will see it.

It must behave like AWS Run Command where a client can tell: invisible for a moment after
SendCommand, Success/Failed/TimedOut/Cancelled with real exit codes and killed process groups,
inline output truncated and the complete output in S3 (moto) under AWS's key layout, and the
errors and faults (throttling, unknown instances, undeliverable, S3 failures) a client must handle.
Blocking boto3 calls, so the tests are plain sync functions.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.support.aws import (
    SsmEndpoint,
    aws_environ,
    moto_s3_server,
    ssm_endpoint,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_ssm import SSMClient
    from mypy_boto3_ssm.type_defs import GetCommandInvocationResultTypeDef

INSTANCE = "i-0123456789abcdef0"
OTHER = "i-0fedcba9876543210"
BUCKET = "ssm-output"
TERMINAL = {"Success", "Failed", "TimedOut", "Cancelled", "Undeliverable"}
# botocore's `max_attempts` counts retries (1 = one retry); `total_max_attempts` counts attempts.
NO_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"})
SESSION = boto3.session.Session("testing", "testing", region_name="us-east-1")


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    with moto_s3_server() as url:
        s3 = SESSION.client("s3", endpoint_url=url)
        try:
            s3.create_bucket(Bucket=BUCKET)
        finally:
            s3.close()
        yield url


@pytest.fixture(scope="module")
def shared_endpoint(moto_url: str) -> Iterator[SsmEndpoint]:
    with ssm_endpoint(moto_url) as endpoint:
        yield endpoint


@pytest.fixture
def endpoint(shared_endpoint: SsmEndpoint) -> Iterator[SsmEndpoint]:
    """The module's endpoint with no faults and zeroed stats, left that way."""
    shared_endpoint.clear_faults()
    shared_endpoint.reset_stats()
    yield shared_endpoint
    shared_endpoint.clear_faults()


def ssm_client(url: str, config: Config = NO_RETRIES) -> SSMClient:
    return SESSION.client("ssm", endpoint_url=url, config=config)


@pytest.fixture
def ssm(endpoint: SsmEndpoint) -> Iterator[SSMClient]:
    client = ssm_client(endpoint.url)
    yield client
    client.close()


@pytest.fixture
def s3(moto_url: str) -> Iterator[S3Client]:
    client = SESSION.client("s3", endpoint_url=moto_url)
    yield client
    client.close()


def send(ssm: SSMClient, *commands: str, timeout: int = 60, **options: str) -> str:
    parameters = {"commands": list(commands), "executionTimeout": [str(timeout)]}
    response = ssm.send_command(
        InstanceIds=[INSTANCE],
        DocumentName="AWS-RunShellScript",
        Parameters=parameters,
        **options,  # type: ignore[arg-type]
    )
    return response["Command"]["CommandId"]


def wait_for(
    ssm: SSMClient, command_id: str, statuses: set[str] = TERMINAL, instance: str = INSTANCE
) -> GetCommandInvocationResultTypeDef:
    deadline = time.monotonic() + 15
    while True:
        try:
            result = ssm.get_command_invocation(CommandId=command_id, InstanceId=instance)
            if result["Status"] in statuses:
                return result
        except ssm.exceptions.InvocationDoesNotExist:
            pass
        assert time.monotonic() < deadline, f"{command_id} never reached {statuses}"
        time.sleep(0.05)


def error_code(error: pytest.ExceptionInfo[ClientError]) -> str:
    return error.value.response["Error"]["Code"]


def live_members(pgid: int) -> list[int]:
    """PIDs of the process group that are not zombies (PID 1 here may never reap those)."""
    alive = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text() if entry.name.isdigit() else ""
        except OSError:
            continue
        if stat:
            state, _ppid, group = stat[stat.rindex(")") + 2 :].split()[:3]
            if int(group) == pgid and state != "Z":
                alive.append(int(entry.name))
    return alive


def assert_group_gone(pgid: int) -> None:
    deadline = time.monotonic() + 3
    while live_members(pgid):
        assert time.monotonic() < deadline, f"process group {pgid} still runs"
        time.sleep(0.05)


def test_invocation_appears_late_then_runs_to_success(ssm: SSMClient) -> None:
    """Invisible right after SendCommand, then InProgress, then Success with stdout and stderr."""
    command_id = send(ssm, "echo out; echo err >&2", "sleep 0.6", "echo $AWS_SSM_INSTANCE_ID; pwd")
    with pytest.raises(ClientError) as missing:
        ssm.get_command_invocation(CommandId=command_id, InstanceId=INSTANCE)
    assert error_code(missing) == "InvocationDoesNotExist"

    running = wait_for(ssm, command_id, {"InProgress"})
    assert running["ResponseCode"] == -1 and running["StandardOutputContent"] == ""
    assert running["ExecutionStartDateTime"].endswith("Z")

    done = wait_for(ssm, command_id)
    assert done["Status"] == done["StatusDetails"] == "Success"
    assert done["ResponseCode"] == 0
    assert done["StandardOutputContent"] == f"out\n{INSTANCE}\n/tmp\n"
    assert done["StandardErrorContent"] == "err\n"
    assert done["StandardOutputUrl"] == done["StandardErrorUrl"] == ""
    assert done["PluginName"] == "aws:runShellScript"
    assert done["ExecutionElapsedTime"].startswith("PT") and done["ExecutionEndDateTime"]


def test_non_zero_exit_is_failed_with_its_code(ssm: SSMClient) -> None:
    """A script ending with exit 7 is Failed with ResponseCode 7; its output is still there."""
    done = wait_for(ssm, send(ssm, "echo before", "exit 7", "echo never"))
    assert (done["Status"], done["StatusDetails"], done["ResponseCode"]) == ("Failed", "Failed", 7)
    assert done["StandardOutputContent"] == "before\n"


def test_large_output_is_truncated_inline_and_complete_in_s3(ssm: SSMClient, s3: S3Client) -> None:
    """Inline stdout keeps 24,000 characters and stderr 8,000; S3 has every byte, AWS's keys."""
    stdout = "".join(f"{i}\n" for i in range(1, 20_001))
    stderr = "".join(f"{i}\n" for i in range(1, 5_001))
    command_id = send(
        ssm, "seq 1 20000", "seq 1 5000 >&2", OutputS3BucketName=BUCKET, OutputS3KeyPrefix="runs"
    )
    done = wait_for(ssm, command_id)
    assert done["Status"] == "Success"
    assert done["StandardOutputContent"] == stdout[:24_000]
    assert done["StandardErrorContent"] == stderr[:8_000]

    key = f"runs/{command_id}/{INSTANCE}/awsrunShellScript/0.awsrunshellscript"
    for stream, text in (("stdout", stdout), ("stderr", stderr)):
        body = s3.get_object(Bucket=BUCKET, Key=f"{key}/{stream}")["Body"]
        with body:
            assert body.read() == text.encode()
    url = f"https://s3.us-east-1.amazonaws.com/{BUCKET}/{key}"
    assert done["StandardOutputUrl"] == f"{url}/stdout"
    assert done["StandardErrorUrl"] == f"{url}/stderr"

    [row] = ssm.list_command_invocations(CommandId=command_id, Details=True)["CommandInvocations"]
    [plugin] = row["CommandPlugins"]
    assert row["Status"] == plugin["Status"] == "Success" and plugin["ResponseCode"] == 0
    assert len(plugin["Output"]) <= 2_500 and plugin["Output"].startswith("1\n2\n3\n")
    assert plugin["StandardOutputUrl"] == f"{url}/stdout"


def test_empty_prefix_has_no_leading_slash_and_empty_streams_no_object(
    ssm: SSMClient, s3: S3Client
) -> None:
    """Without a prefix the key starts with the command id; an empty stderr writes no object."""
    command_id = send(ssm, "echo only stdout", OutputS3BucketName=BUCKET)
    assert wait_for(ssm, command_id)["Status"] == "Success"
    listing = s3.list_objects_v2(Bucket=BUCKET, Prefix=command_id)
    assert [o["Key"] for o in listing["Contents"]] == [
        f"{command_id}/{INSTANCE}/awsrunShellScript/0.awsrunshellscript/stdout"
    ]


def test_execution_timeout_kills_the_process_group(ssm: SSMClient) -> None:
    """executionTimeout=1 on `sleep 30` ends TimedOut (-1) within seconds, its group killed."""
    started = time.monotonic()
    done = wait_for(ssm, send(ssm, "echo $$", "sleep 30 & sleep 30", timeout=1))
    assert time.monotonic() - started < 5
    assert (done["Status"], done["StatusDetails"]) == ("TimedOut", "ExecutionTimedOut")
    assert done["ResponseCode"] == -1
    shell = int(done["StandardOutputContent"])  # output written before the kill is kept
    assert_group_gone(shell)


def test_cancel_command_kills_the_running_script(ssm: SSMClient) -> None:
    """CancelCommand on a running invocation ends it Cancelled (-1) and kills its group."""
    command_id = send(ssm, "echo $$", "sleep 30")
    wait_for(ssm, command_id, {"InProgress"})
    assert ssm.cancel_command(CommandId=command_id)["ResponseMetadata"]["HTTPStatusCode"] == 200
    done = wait_for(ssm, command_id)
    assert (done["Status"], done["StatusDetails"], done["ResponseCode"]) == (
        "Cancelled",
        "Cancelled",
        -1,
    )
    assert_group_gone(int(done["StandardOutputContent"]))
    with pytest.raises(ClientError) as unknown:
        ssm.cancel_command(CommandId="00000000-0000-0000-0000-000000000000")
    assert error_code(unknown) == "InvalidCommandId"


def test_requests_the_service_would_refuse(ssm: SSMClient) -> None:
    """Other documents, missing commands, malformed ids, other plugins, unknown actions: 400s."""
    cases: list[tuple[str, dict[str, Any]]] = [
        ("InvalidDocument", {"DocumentName": "AWS-RunPowerShellScript"}),
        ("InvalidParameters", {"Parameters": {"commands": []}}),
        ("InvalidParameters", {"Parameters": {"commands": ["true"], "executionTimeout": ["0"]}}),
        ("InvalidInstanceId", {"InstanceIds": ["i-nothex"]}),
        ("DuplicateInstanceId", {"InstanceIds": [INSTANCE, INSTANCE]}),
    ]
    for code, change in cases:
        request: dict[str, Any] = {
            "InstanceIds": [INSTANCE],
            "DocumentName": "AWS-RunShellScript",
            "Parameters": {"commands": ["true"]},
            **change,
        }
        with pytest.raises(ClientError) as refused:
            ssm.send_command(**request)
        assert error_code(refused) == code, change
    command_id = send(ssm, "true")
    wait_for(ssm, command_id)
    with pytest.raises(ClientError) as plugin:
        ssm.get_command_invocation(CommandId=command_id, InstanceId=INSTANCE, PluginName="aws:x")
    assert error_code(plugin) == "InvalidPluginName"
    with pytest.raises(ClientError) as unknown:
        ssm.describe_instance_information()
    assert error_code(unknown) == "UnknownOperationException"


def test_only_the_listed_instances_exist(moto_url: str) -> None:
    """With --instances, any other id is InvalidInstanceId; a listed one runs."""
    with ssm_endpoint(moto_url, instances=[OTHER], visibility_delay=0) as restricted:
        client = ssm_client(restricted.url)
        try:
            with pytest.raises(ClientError) as refused:
                send(client, "true")
            assert error_code(refused) == "InvalidInstanceId"
            response = client.send_command(
                InstanceIds=[OTHER],
                DocumentName="AWS-RunShellScript",
                Parameters={"commands": ["echo listed"]},
            )
            command_id = response["Command"]["CommandId"]
            done = wait_for(client, command_id, instance=OTHER)
            assert done["StandardOutputContent"] == "listed\n"
        finally:
            client.close()


def test_unknown_instances_fault(endpoint: SsmEndpoint, ssm: SSMClient) -> None:
    """Ids made unknown at run time are refused by SendCommand and GetCommandInvocation."""
    command_id = send(ssm, "true")
    wait_for(ssm, command_id)
    assert endpoint.set_faults(unknown_instances=[INSTANCE])["unknown_instances"] == [INSTANCE]
    for call in (
        lambda: send(ssm, "true"),
        lambda: ssm.get_command_invocation(CommandId=command_id, InstanceId=INSTANCE),
    ):
        with pytest.raises(ClientError) as refused:
            call()
        assert error_code(refused) == "InvalidInstanceId"


def test_throttling_fault(endpoint: SsmEndpoint, ssm: SSMClient) -> None:
    """The next N calls answer ThrottlingException; botocore's own retries get past one."""
    endpoint.set_faults(throttle=2)
    for _ in range(2):
        with pytest.raises(ClientError) as throttled:
            ssm.list_command_invocations()
        assert error_code(throttled) == "ThrottlingException"
    ssm.list_command_invocations()

    endpoint.set_faults(throttle=1)
    endpoint.reset_stats()
    retrying = ssm_client(endpoint.url, Config(retries={"max_attempts": 3, "mode": "standard"}))
    try:
        retrying.list_command_invocations()
    finally:
        retrying.close()
    assert endpoint.stats() == {"ListCommandInvocations": 2}


def test_undeliverable_fault(endpoint: SsmEndpoint, ssm: SSMClient, tmp_path: Path) -> None:
    """Undeliverable invocations never run and end Undeliverable once visible."""
    endpoint.set_faults(undeliverable=True)
    marker = tmp_path / "ran"
    command_id = send(ssm, f"touch {marker}")
    with pytest.raises(ClientError) as missing:
        ssm.get_command_invocation(CommandId=command_id, InstanceId=INSTANCE)
    assert error_code(missing) == "InvocationDoesNotExist"
    done = wait_for(ssm, command_id)
    assert (done["Status"], done["StatusDetails"]) == ("Undeliverable", "Undeliverable")
    assert done["ResponseCode"] == -1 and done["ExecutionStartDateTime"] == ""
    assert not marker.exists()


def test_s3_failure_fault(endpoint: SsmEndpoint, ssm: SSMClient, s3: S3Client) -> None:
    """With S3 failing the invocation still succeeds, inline output only, with empty URLs."""
    endpoint.set_faults(s3_failure=True)
    command_id = send(ssm, "echo kept inline", OutputS3BucketName=BUCKET)
    done = wait_for(ssm, command_id)
    assert done["Status"] == "Success" and done["StandardOutputContent"] == "kept inline\n"
    assert done["StandardOutputUrl"] == done["StandardErrorUrl"] == ""
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix=command_id)


def test_stats_count_every_api_call(endpoint: SsmEndpoint, ssm: SSMClient) -> None:
    """/_stats counts calls per action, throttled ones too, and /_stats/reset zeroes them."""
    command_id = send(ssm, "true")
    wait_for(ssm, command_id)
    polls = endpoint.stats()["GetCommandInvocation"]
    assert polls >= 1 and endpoint.stats() == {"SendCommand": 1, "GetCommandInvocation": polls}
    endpoint.set_faults(throttle=1)
    with pytest.raises(ClientError):
        ssm.cancel_command(CommandId=command_id)
    ssm.cancel_command(CommandId=command_id)  # a finished command: nothing to cancel
    assert endpoint.stats()["CancelCommand"] == 2
    endpoint.reset_stats()
    assert endpoint.stats() == {}


def test_boto3_finds_it_through_the_environment(
    endpoint: SsmEndpoint, moto_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With aws_environ() set, a boto3 client made with no endpoint_url reaches the endpoint."""
    for name, value in aws_environ(endpoint.url, moto_url).items():
        monkeypatch.setenv(name, value)
    client = boto3.session.Session().client("ssm", config=NO_RETRIES)
    try:
        command_id = send(client, "echo via env")
        assert wait_for(client, command_id)["StandardOutputContent"] == "via env\n"
    finally:
        client.close()
    assert endpoint.stats()["SendCommand"] == 1


def test_sigterm_kills_running_invocations(moto_url: str, tmp_path: Path) -> None:
    """Stopping the endpoint with SIGTERM kills the process groups of running invocations."""
    pid_file = tmp_path / "pid"
    with ssm_endpoint(moto_url, visibility_delay=0) as short_lived:
        client = ssm_client(short_lived.url)
        try:
            send(client, f"echo $$ > {pid_file}", "sleep 30")
        finally:
            client.close()
        deadline = time.monotonic() + 5
        while not pid_file.exists() or not pid_file.read_text().strip():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        shell = int(pid_file.read_text())
        assert live_members(shell)
    assert_group_gone(shell)
