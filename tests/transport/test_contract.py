"""One contract for every transport: the same assertions over local:// and ssm://.

ssm:// runs through real boto3 against the project's local SSM endpoint, which executes the
commands on this machine and writes full output to moto's S3 server (tests/support/aws.py).
"""

from __future__ import annotations

import random
import string
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import boto3
import pytest

from resolvers.slurm.errors import SlurmError, SlurmErrorKind, check
from tests.conftest import Aws
from transport import Command, CommandResult, Transport, TransportTimeout, open_transport
from transport.local import LocalTransport

PY = sys.executable


@pytest.fixture(params=["local", "ssm"])
async def transport(request: pytest.FixtureRequest) -> AsyncIterator[Transport]:
    """Each backend, configured as a deployment would configure it."""
    if request.param == "local":
        opened: Transport = LocalTransport(timeout=20)
    else:
        aws: Aws = request.getfixturevalue("aws")
        opened = open_transport(aws.ssm_url(timeout=20))
    try:
        yield opened
    finally:
        await opened.aclose()


def py(code: str, *args: str, **kwargs: object) -> Command:
    return Command((PY, "-c", code, *args), **kwargs)  # type: ignore[arg-type]


async def test_a_batch_comes_back_in_order(transport: Transport) -> None:
    """stdout, stderr and exit code of each command, in the order the batch gave them."""
    results = await transport.run(
        [
            py("print('one')"),
            py("import sys; print('two', file=sys.stderr); sys.exit(3)"),
            Command(("true",)),
        ]
    )
    assert [(r.stdout, r.stderr, r.exit_code) for r in results] == [
        ("one\n", "", 0),
        ("", "two\n", 3),
        ("", "", 0),
    ]


async def test_stdin_and_environment_reach_the_program(transport: Transport) -> None:
    """stdin bytes arrive intact and `env` adds variables, values with spaces and `=` included."""
    code = "import os, sys; sys.stdout.write(sys.stdin.read() + '|' + os.environ['EXTRA'])"
    [result] = await transport.run(
        [py(code, stdin=b"line 1\nline 2 $(id)\n", env={"EXTRA": "a=1 b"})]
    )
    assert result.stdout == "line 1\nline 2 $(id)\n|a=1 b"


async def test_arguments_never_reach_a_shell(transport: Transport, tmp_path: Path) -> None:
    """Shell syntax in argv arrives verbatim and runs nothing (a canary file stays absent)."""
    canary = tmp_path / "canary"
    hostile = f"x'; touch {canary}; echo '$(touch {canary})`touch {canary}`\"\\"
    [result] = await transport.run([py("import sys; print(sys.argv[1])", hostile)])
    assert result.stdout == hostile + "\n"
    assert not canary.exists()


async def test_invalid_utf8_is_replaced(transport: Transport) -> None:
    """Undecodable bytes become U+FFFD and the rest of the output survives."""
    [result] = await transport.run([py("import sys; sys.stdout.buffer.write(b'ok \\xff end')")])
    assert result.stdout == "ok \ufffd end"


async def test_a_missing_program_exits_127(transport: Transport) -> None:
    """As a shell reports it, so failures classify the same over every transport (the message
    is the shell's or `env`'s, which starts every command in its clean environment)."""
    [result] = await transport.run([Command(("no-such-program-xyz",))])
    assert result.exit_code == 127
    assert "not found" in result.stderr or "No such file or directory" in result.stderr
    assert check_kind(result) is SlurmErrorKind.NOT_INSTALLED


async def test_large_output_arrives_complete(transport: Transport) -> None:
    """Output far over SSM's 24,000 inline characters, even incompressible, is exact. It is
    made on the head node: sent as stdin, 300,000 characters are more than one SendCommand
    carries (64 KB with its document), so ssm:// refuses them (test_ssm_request_size.py)."""
    noise = "".join(random.Random(7).choices(string.ascii_letters + string.digits, k=300_000))
    make = "random.Random(7).choices(string.ascii_letters + string.digits, k=300_000)"
    [result] = await transport.run(
        [py(f"import random, string, sys; sys.stdout.write(''.join({make}))")]
    )
    assert result.stdout == noise


async def test_a_batch_over_its_deadline_times_out(aws: Aws) -> None:
    """Both backends stop a batch at its deadline with TransportTimeout."""
    for transport in (LocalTransport(timeout=1.0), open_transport(aws.ssm_url(timeout=2))):
        try:
            with pytest.raises(TransportTimeout):
                await transport.run([Command(("sleep", "30"))])
        finally:
            await transport.aclose()


def test_ssm_tests_never_reach_real_aws(aws: Aws) -> None:
    """Under the aws fixture, boto3 resolves SSM, S3 and EC2 to loopback endpoints only."""
    session = boto3.session.Session()
    for service in ("ssm", "s3", "ec2"):
        client = session.client(service)
        try:
            assert client.meta.endpoint_url.startswith("http://127.0.0.1:"), service
        finally:
            client.close()


async def test_a_20000_job_listing_is_complete_and_exact(
    transport: Transport, tmp_path: Path
) -> None:
    """squeue-shaped output of 20,000 jobs (rows from the golden files) arrives byte-exact."""
    from bench.synthetic import synthetic_squeue
    from resolvers.slurm.jobs import parse_squeue

    boundary = "contract0boundary"
    listing = tmp_path / "squeue.out"
    listing.write_text(synthetic_squeue(20_000, boundary))
    [result] = await transport.run([Command(("cat", str(listing)))])
    assert result.stdout == listing.read_text()
    assert len(parse_squeue(result.stdout, boundary)) == 20_000


def check_kind(result: CommandResult) -> SlurmErrorKind | None:
    try:
        check(result)
    except SlurmError as exc:
        return exc.kind
    return None


async def test_otherwise_runs_only_after_a_silent_command(
    transport: Transport, tmp_path: Path, unix_users: None
) -> None:
    """A command's `otherwise` runs in the same round trip, as its own user, only when the
    command printed nothing on stdout; it is never run after a refused command, and is itself
    refused below the floor (root), like any command."""
    flag = tmp_path / "ran"
    whoami = Command(("id", "-un"), user="alice")
    spoke = Command(("echo", "rows"), otherwise=Command(("touch", str(flag))))
    silent = Command(("sh", "-c", "echo gone >&2; exit 1"), otherwise=whoami)
    refused = Command(("true",), user="root", otherwise=Command(("touch", str(flag))))
    to_root = Command(("true",), otherwise=Command(("touch", str(flag)), user="root"))
    results = await transport.run([spoke, silent, refused, to_root])
    assert (results[0].stdout, results[0].otherwise) == ("rows\n", None)
    assert (results[1].stderr, results[1].exit_code) == ("gone\n", 1)
    assert results[1].otherwise == CommandResult(whoami.argv, "alice\n", "", 0)
    assert results[2].refused and results[2].otherwise is None
    assert results[3].otherwise is not None and results[3].otherwise.refused
    assert not flag.exists()
