"""`local://` — run the Slurm CLI as subprocesses of the server, for a server on the head node.

    local://?timeout=30&concurrency=8&sessions=4&pass_env=AWS_ENDPOINT_URL_S3,AWS_REGION

Commands never inherit the server's environment (it holds the token map and AWS credentials):
each gets the allow-list of transport/environment.py, taken from the server's environment once,
when the transport is made. Each command starts in a new session so that a timeout can kill the
whole process group it started, and nothing else. Its stdin is an unlinked temporary file, not a
pipe: a program that exits without reading it (a retried submit that finds its job) cannot turn
into a broken pipe.

A command that says how an interactive program may answer it (`Command.interactive`) is asked of
a long-lived one instead (transport/interactive.py), at most `sessions` of each program; with
`sessions=0`, every command is a process of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import pwd
import signal
import tempfile
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import IO

from transport.base import DEFAULT_MIN_UID, Command, CommandResult, decode_output, refused_result
from transport.environment import command_environ
from transport.errors import TransportError, TransportTimeout
from transport.interactive import ANSWER_TIMEOUT, SessionPool, SessionStats
from transport.locks import hold_lock, lock_directory

DEFAULT_TIMEOUT = 30.0
DEFAULT_CONCURRENCY = 8
DEFAULT_SESSIONS = 4
# A shell reports a missing program as 127; answering the same way keeps local:// and ssm://
# indistinguishable to the code that classifies failures.
EXIT_NOT_FOUND = 127


class LocalTransport:
    """Runs each batch's commands concurrently, at most `concurrency` processes at a time.

    `environ` is the environment the command environment is taken from (the server's by
    default), `pass_env` names more variables to take from it, `min_uid` is the smallest UID
    a command may run as, and `lock_dir` holds the files behind `Command.lock`.
    """

    def __init__(
        self,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        concurrency: int = DEFAULT_CONCURRENCY,
        environ: Mapping[str, str] | None = None,
        pass_env: Iterable[str] = (),
        min_uid: int = DEFAULT_MIN_UID,
        lock_dir: str | None = None,
        sessions: int = DEFAULT_SESSIONS,
        session_timeout: float = ANSWER_TIMEOUT,
    ) -> None:
        if timeout <= 0 or concurrency < 1 or sessions < 0:
            raise ValueError(
                "timeout must be positive, concurrency at least 1 and sessions at least 0"
            )
        self.timeout = timeout
        self.min_uid = max(1, min_uid)  # root is never a user to switch to
        self._slots = asyncio.Semaphore(concurrency)
        self._environ = command_environ(os.environ if environ is None else environ, pass_env)
        self._whoami = getpass.getuser()
        self._is_root = os.geteuid() == 0
        self._lock_dir = lock_dir or lock_directory(self._is_root)
        self._sessions = SessionPool(sessions, self._environ, session_timeout) if sessions else None

    @property
    def url(self) -> str:
        return "local://"

    @property
    def environ(self) -> Mapping[str, str]:
        """What every command's environment starts from (before Command.env and runuser)."""
        return dict(self._environ)

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

    @property
    def session_stats(self) -> SessionStats | None:
        """What the interactive sessions did (None: sessions are off)."""
        return None if self._sessions is None else self._sessions.stats

    async def aclose(self) -> None:
        if self._sessions is not None:
            await self._sessions.aclose()

    async def _argv_for(self, command: Command) -> tuple[str, ...] | str:
        """The argv to execute, or the reason the command may not run as its user. The floor
        applies to every named user, the server's own included: `user="root"` on a server
        running as root is refused, not run without a switch."""
        if command.user is None:
            return command.argv
        try:
            uid = (await asyncio.to_thread(pwd.getpwnam, command.user)).pw_uid
        except KeyError:
            return "no such user on the head node"
        if uid < self.min_uid:
            return f"UID {uid} is below the minimum of {self.min_uid}"
        if command.user == self._whoami:
            return command.argv
        if not self._is_root:
            raise TransportError(
                f"cannot run commands as {command.user!r}: the server does not run as root"
            )
        return ("runuser", "-u", command.user, "--", *command.argv)

    async def _run_one(
        self, command: Command, started: list[asyncio.subprocess.Process]
    ) -> CommandResult:
        if command.interactive is not None and self._sessions is not None:
            answer = await self._sessions.ask(command)
            if answer is not None:
                if command.otherwise is not None and not answer.stdout:
                    then = await self._run_single(command.otherwise, started)
                    answer = replace(answer, otherwise=then)
                return answer
        result = await self._run_single(command, started)
        if command.otherwise is not None and not result.refused and not result.stdout:
            result = replace(result, otherwise=await self._run_single(command.otherwise, started))
        return result

    async def _run_single(
        self, command: Command, started: list[asyncio.subprocess.Process]
    ) -> CommandResult:
        argv = await self._argv_for(command)
        if isinstance(argv, str):
            return refused_result(command, argv)
        env = {**self._environ, **command.env}
        async with self._locked(command.lock), self._slots, _stdin_file(command.stdin) as stdin:
            try:
                process = await asyncio.create_subprocess_exec(
                    *argv,
                    stdin=stdin if stdin is not None else asyncio.subprocess.DEVNULL,
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
            stdout, stderr = await process.communicate()
            started.remove(process)
        assert process.returncode is not None
        # A negative return code is a signal; report it as a shell would (128 + signal).
        code = process.returncode if process.returncode >= 0 else 128 - process.returncode
        return CommandResult(command.argv, decode_output(stdout), decode_output(stderr), code)

    @contextlib.asynccontextmanager
    async def _locked(self, name: str | None) -> AsyncIterator[None]:
        if name is None:
            yield
            return
        async with hold_lock(self._lock_dir, name):
            yield


@contextlib.asynccontextmanager
async def _stdin_file(data: bytes | None) -> AsyncIterator[IO[bytes] | None]:
    """`data` in an unlinked temporary file, rewound, for a child to read at its own pace."""
    if data is None:
        yield None
        return
    with tempfile.TemporaryFile() as file:
        await asyncio.to_thread(_fill, file, data)
        yield file


def _fill(file: IO[bytes], data: bytes) -> None:
    file.write(data)
    file.flush()
    file.seek(0)


def _kill_group(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
