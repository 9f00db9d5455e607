"""The local:// backend against real processes (no Slurm needed)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import pytest

from transport import Command, TransportTimeout, open_transport
from transport.local import LocalTransport

PY = sys.executable


def py(code: str, **kwargs: object) -> Command:
    return Command((PY, "-c", code), **kwargs)  # type: ignore[arg-type]


async def test_batch_results_come_back_in_order() -> None:
    """Each result belongs to the command at the same position, with stdout, stderr and code."""
    transport = open_transport("local://")
    results = await transport.run(
        [
            py("import sys; print('one'); sys.exit(0)"),
            py("import sys; print('two', file=sys.stderr); sys.exit(3)"),
        ]
    )
    assert [r.stdout for r in results] == ["one\n", ""]
    assert [r.stderr for r in results] == ["", "two\n"]
    assert [r.exit_code for r in results] == [0, 3]
    assert results[0].argv[0] == PY


async def test_stdin_and_environment_reach_the_program() -> None:
    """stdin bytes are fed in and `env` is added to the command's allow-listed environment."""
    transport = LocalTransport()
    code = "import os, sys; print(sys.stdin.read(), os.environ['EXTRA'], os.environ['PATH'] != '')"
    [result] = await transport.run([py(code, stdin=b"from stdin", env={"EXTRA": "x=1 y"})])
    assert result.stdout == "from stdin x=1 y True\n"


async def test_arguments_are_never_interpreted_by_a_shell() -> None:
    """Shell metacharacters in argv arrive verbatim."""
    evil = "$(touch /tmp/pwned); `id` | cat; 'quote\" \\"
    command = Command((PY, "-c", "import sys; print(sys.argv[1])", evil))
    [echoed] = await LocalTransport().run([command])
    assert echoed.stdout == evil + "\n"
    assert not Path("/tmp/pwned").exists()  # noqa: ASYNC240 - a one-off check in a test


async def test_invalid_utf8_is_replaced_not_fatal() -> None:
    """Undecodable bytes become U+FFFD; the rest of the output survives."""
    code = "import sys; sys.stdout.buffer.write(b'ok \\xff\\xfe end')"
    [result] = await LocalTransport().run([py(code)])
    assert result.stdout == "ok \ufffd\ufffd end"


async def test_missing_program_is_exit_127_like_a_shell() -> None:
    """A program that is not installed answers as a shell would, so failures classify alike."""
    [result] = await LocalTransport().run([Command(("no-such-program-xyz",))])
    assert result.exit_code == 127
    assert "command not found" in result.stderr


async def test_timeout_kills_everything_the_batch_started(tmp_path: Path) -> None:
    """A batch over its deadline raises TransportTimeout and its process group is gone."""
    pid_file = tmp_path / "child.pid"
    # The command forks a grandchild that would outlive a plain kill of its parent.
    code = (
        "import os, time, subprocess, sys\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(60)\n"
    )
    transport = LocalTransport(timeout=1.0)
    started = time.monotonic()
    with pytest.raises(TransportTimeout):
        await transport.run([py(code), py("print('quick')")])
    assert time.monotonic() - started < 5
    grandchild = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _alive(grandchild):  # noqa: ASYNC110 - polling a pid
        await asyncio.sleep(0.05)
    assert not _alive(grandchild)


async def test_concurrency_is_bounded() -> None:
    """No more than `concurrency` commands of a batch run at the same time."""
    code = "import time; print(time.monotonic()); time.sleep(0.3); print(time.monotonic())"
    transport = LocalTransport(concurrency=2)
    results = await transport.run([py(code) for _ in range(4)])
    spans = [tuple(float(x) for x in r.stdout.split()) for r in results]
    peak = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert peak <= 2


def test_urls_choose_and_configure_the_backend() -> None:
    """`local://?timeout=…&concurrency=…` configures the backend; unknown schemes are refused."""
    transport = open_transport("local://?timeout=2.5&concurrency=3")
    assert isinstance(transport, LocalTransport)
    assert transport.timeout == 2.5
    with pytest.raises(ValueError, match="unknown transport"):
        open_transport("gopher://x")
    with pytest.raises(ValueError, match="unknown transport option"):
        open_transport("local://?speed=fast")


def test_commands_refuse_nul_bytes_and_empty_argv() -> None:
    """A NUL byte cannot be passed to exec; refuse it when the command is made."""
    with pytest.raises(ValueError, match="non-empty argv"):
        Command(())
    with pytest.raises(ValueError, match="NUL"):
        Command(("echo", "a\x00b"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); treat it as dead (its parent just has not reaped it).
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
