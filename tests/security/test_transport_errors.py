"""A transport's own words stay with operators: clients never read AWS's error messages, the head
node's stderr, instance ids or bucket names in an error; the server's log keeps them.

The leak these close: with SSM failing, `{ cluster { jobs { totalCount } } }` answered
`SLURM_UNAVAILABLE` with "the head node is not available: Instance i-0123456789abcdef0 is not a
managed node" (AWS's message, verbatim; an AccessDenied one names the role and account), and a
failed batch put the last 500 characters of the head node's stderr in the message.
"""

from __future__ import annotations

from typing import Any

import pytest

from schema.errors import to_graphql_error
from server.settings import Settings
from tests.conftest import INSTANCE, Aws
from tests.support.app import app_client
from transport import OutputTooLarge, TransportError, TransportUnavailable


@pytest.mark.parametrize(
    ("fault", "internals"),
    [
        ({"unknown_instances": [INSTANCE]}, (INSTANCE, "managed node", "InvalidInstanceId")),
        ({"undeliverable": True}, (INSTANCE, "Undeliverable")),
    ],
)
async def test_ssm_failures_reach_clients_without_aws_words(
    faults: Aws, fault: dict[str, Any], internals: tuple[str, ...], caplog: pytest.LogCaptureFixture
) -> None:
    """Over ssm:// with the service failing, the client gets SLURM_UNAVAILABLE and a fixed
    message; the instance id and AWS's words are in the server's log only."""
    faults.endpoint.set_faults(**fault)
    settings = Settings(clusters=(("local", faults.ssm_url(timeout=5)),), cache_ttl=0.0)
    with caplog.at_level("WARNING", logger="slurm_graphql.transport"):
        async with app_client(settings) as client:
            response = await client.post(
                "/graphql", json={"query": "{ cluster { jobs { totalCount } } }"}
            )
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "SLURM_UNAVAILABLE"
    assert [word for word in internals if word in response.text] == []
    assert INSTANCE in caplog.text


@pytest.mark.parametrize(
    "exc",
    [
        TransportError("the batch failed on the head node (code 2): sh: 1: /opt/x: secret-path"),
        TransportError("AWS refused send_command: AccessDeniedException: User: arn:aws:sts::"
                       "123456789012:assumed-role/api-role/x is not authorized"),
        TransportUnavailable("AWS could not be reached: https://vpce-0abc.ssm.internal"),
        OutputTooLarge("could not be read from s3://private-bucket/prefix/key (AWS refused)"),
    ],
)  # fmt: skip
def test_transport_messages_are_replaced_for_clients(exc: Exception) -> None:
    """Head-node stderr, ARNs, endpoints and buckets never make it into the client's message."""
    error = to_graphql_error(exc)
    assert error is not None and error.extensions is not None
    assert error.extensions["code"] in ("SLURM_UNAVAILABLE", "OUTPUT_TOO_LARGE")
    for word in ("secret-path", "123456789012", "api-role", "vpce", "private-bucket", "AWS"):
        assert word not in error.message
