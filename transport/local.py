"""`local://` — run the Slurm CLI as subprocesses of the server, for a server on the head node.

The server's own environment is inherited, so `SLURM_CONF` and `PATH` decide which cluster and
which binaries are used. Each command starts in a new session so that a timeout can kill the whole
process group it started, and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import signal
from collections.abc import Mapping, Sequence

from transport.base import Command, CommandResult, decode_output
from transport.errors import TransportError, TransportTimeout

DEFAULT_TIMEOUT = 30.0
DEFAULT_CONCURRENCY = 8
# A shell reports a missing program as 127; answering the same way keeps local:// and ssm://
# indistinguishable to the code that classifies failures.
EXIT_NOT_FOUND = 127


class LocalTransport:
    """Runs each batch's commands concurrently, at most `concurrency` processes at a time."""

    def __init__(
        self,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        concurrency: int = DEFAULT_CONCURRENCY,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        if timeout <= 0 or concurrency < 1:
            raise ValueError("timeout must be positive and concurrency at least 1")
        self.timeout = timeout
        self._slots = asyncio.Semaphore(concurrency)
        self._environ = dict(os.environ if environ is None else environ)
        self._whoami = getpass.getuser()
        self._is_root = os.geteuid() == 0

    @property
    def url(self) -> str:
        return "local://"

    async def run(self, commands: Sequence[Command]) -> list[CommandResult]:
        started: list[asyncio.subprocess.Process] = []
        try:
            async with asyncio.timeout(self.timeout):
                return list(await asyncio.gather(*(self._run_one(c, started) for c in commands)))
        except TimeoutError as exc:
            raise TransportTimeout(
                f"the batch did not finish within {self.timeout:g} s and was stopped"
            ) from exc
        finally:
            for process in started:
                _kill_group(process)
                # Reap the child so it does not linger as a zombie.
                with contextlib.suppress(ProcessLookupError, ChildProcessError):
                    await asyncio.shield(process.wait())

    async def aclose(self) -> None:
        return None

    def _argv_for(self, command: Command) -> tuple[str, ...]:
        if command.user is None or command.user == self._whoami:
            return command.argv
        if not self._is_root:
            raise TransportError(
                f"cannot run commands as {command.user!r}: the server does not run as root"
            )
        return ("runuser", "-u", command.user, "--", *command.argv)

    async def _run_one(
        self, command: Command, started: list[asyncio.subprocess.Process]
    ) -> CommandResult:
        argv = self._argv_for(command)
        env = {**self._environ, **command.env} if command.env else self._environ
        async with self._slots:
            try:
                process = await asyncio.create_subprocess_exec(
                    *argv,
                    stdin=asyncio.subprocess.PIPE if command.stdin is not None else None,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    env=env,
                    start_new_session=True,
                )
            except FileNotFoundError:
                return CommandResult(
                    command.argv, "", f"{argv[0]}: command not found\n", EXIT_NOT_FOUND
                )
            except PermissionError as exc:
                return CommandResult(command.argv, "", f"{argv[0]}: {exc.strerror}\n", 126)
            started.append(process)
            stdout, stderr = await process.communicate(command.stdin)
            started.remove(process)
        assert process.returncode is not None
        # A negative return code is a signal; report it as a shell would (128 + signal).
        code = process.returncode if process.returncode >= 0 else 128 - process.returncode
        return CommandResult(command.argv, decode_output(stdout), decode_output(stderr), code)


def _kill_group(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
