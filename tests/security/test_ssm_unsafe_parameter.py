"""The last guard before SendCommand: a parameter that still holds `{{` is never sent, and the
client learns only UNSAFE_PARAMETER (quoting makes this unreachable from the API today; the guard
is for whatever builds a script tomorrow)."""

from __future__ import annotations

import time

import pytest

from schema.errors import UNSAFE_PARAMETER_MESSAGE, to_graphql_error
from tests.conftest import INSTANCE, Aws
from transport import UnsafeParameter, open_transport
from transport.ssm import SsmTransport


async def test_a_script_holding_two_braces_is_not_sent(aws: Aws) -> None:
    """The ssm:// transport handed a raw script with `{{ssm:…}}` raises UnsafeParameter and
    SendCommand is never called. (`_invoke` is the one way to give it a script that did not
    come from build_script, which cannot make one.)"""
    transport = open_transport(aws.ssm_url())
    assert isinstance(transport, SsmTransport)
    before = aws.endpoint.stats().get("SendCommand", 0)
    try:
        with pytest.raises(UnsafeParameter):
            await transport._invoke(INSTANCE, "echo {{ssm:/prod/api-key}}", time.monotonic() + 5)
    finally:
        await transport.aclose()
    assert aws.endpoint.stats().get("SendCommand", 0) == before


def test_clients_see_a_code_and_no_internals() -> None:
    """UnsafeParameter reaches a client as UNSAFE_PARAMETER with a fixed message: not the
    parameter's name, the script, or the value that held the braces."""
    error = to_graphql_error(UnsafeParameter("the commands parameter holds '{{' in echo x{{y"))
    assert error is not None
    assert error.extensions == {"code": "UNSAFE_PARAMETER"}
    assert error.message == UNSAFE_PARAMETER_MESSAGE
    assert "commands" not in error.message and "echo" not in error.message
