"""The local SSM endpoint resolves Parameter Store references in SendCommand's parameters, as Run
Command does, so a client that lets `{{ssm:NAME}}` through is caught reading the parameter."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from botocore.exceptions import ClientError

from tests.support.aws import ssm_endpoint
from tests.transport.test_ssm_endpoint import error_code, send, ssm_client, wait_for

if TYPE_CHECKING:
    from mypy_boto3_ssm import SSMClient

PLAIN, SECURE = "plain-value-1f3a", "secure-value-9c2e"


@pytest.fixture(scope="module")
def ssm() -> Iterator[SSMClient]:
    """An endpoint (no S3) with /test/plain (String, two versions) and /test/secure
    (SecureString), written through boto3's PutParameter."""
    with ssm_endpoint(None) as endpoint:
        client = ssm_client(endpoint.url)
        client.put_parameter(Name="/test/plain", Value="first", Type="String")
        client.put_parameter(Name="/test/plain", Value=PLAIN, Type="String", Overwrite=True)
        client.put_parameter(Name="/test/secure", Value=SECURE, Type="SecureString")
        yield client
        client.close()


def run(ssm: SSMClient, *commands: str) -> str:
    result = wait_for(ssm, send(ssm, *commands))
    assert result["Status"] == "Success", result
    return result["StandardOutputContent"]


def test_references_in_commands_are_resolved_before_the_script_runs(ssm: SSMClient) -> None:
    """`{{ssm:…}}`, `{{ ssm:… }}`, `{{ssm:…:1}}` and `{{ssm-secure:…}}` reach the script as the
    parameters' values; single quotes in the script do not stop it (the service is not a shell)."""
    printed = run(
        ssm,
        "echo {{ssm:/test/plain}}",
        "echo '{{ ssm:/test/plain }}'",
        "echo {{ssm:/test/plain:1}}",
        "echo '{{ssm-secure:/test/secure}}'",
    )
    assert printed.split() == [PLAIN, PLAIN, "first", SECURE]


def test_what_is_not_a_reference_is_left_alone(ssm: SSMClient) -> None:
    """Single braces and braces split by shell quoting are sent to the shell untouched."""
    printed = run(ssm, "echo '{'\"{\"'ssm:/test/plain}}' ${HOME+x} '{ssm:/test/plain}'")
    assert printed.split() == ["{{ssm:/test/plain}}", "x", "{ssm:/test/plain}"]


@pytest.mark.parametrize(
    "reference",
    ["{{ssm:/test/missing}}", "{{ssm:/test/secure}}", "{{ssm-secure:/test/plain}}",
     "{{ssm:/test/plain:9}}"],
)  # fmt: skip
def test_unresolvable_references_fail_send_command(ssm: SSMClient, reference: str) -> None:
    """A missing parameter, one of the other kind, or a missing version: InvalidParameters, and
    nothing runs."""
    with pytest.raises(ClientError) as refused:
        send(ssm, f"echo {reference}")
    assert error_code(refused) == "InvalidParameters"


def test_parameters_round_trip_through_the_api(ssm: SSMClient) -> None:
    """GetParameter shows a SecureString only with decryption; DeleteParameter removes one;
    PutParameter will not overwrite unless asked."""
    assert ssm.get_parameter(Name="/test/plain")["Parameter"]["Value"] == PLAIN
    assert ssm.get_parameter(Name="/test/secure")["Parameter"]["Value"] != SECURE
    decrypted = ssm.get_parameter(Name="/test/secure", WithDecryption=True)
    assert decrypted["Parameter"]["Value"] == SECURE
    with pytest.raises(ClientError) as exists:
        ssm.put_parameter(Name="/test/plain", Value="again", Type="String")
    assert error_code(exists) == "ParameterAlreadyExists"
    ssm.put_parameter(Name="/test/gone", Value="x", Type="String")
    ssm.delete_parameter(Name="/test/gone")
    with pytest.raises(ClientError) as missing:
        ssm.get_parameter(Name="/test/gone")
    assert error_code(missing) == "ParameterNotFound"
