"""Long-lived interactive programs (`scontrol` read from a pipe) that answer `Command.interactive`
requests for local://, so a request the controller answers in a third of a millisecond does not
also pay for a new process (3-5 ms of exec, dynamic linking and reading slurm.conf).

A session is one such process, serving one request at a time. Sessions are kept per program and
environment, at most `size` of each; a request waits for a free one (under the batch's timeout).
A session that times out, is cancelled mid-answer, breaks the echo protocol or dies is killed
(its whole process group) and not reused; the request is then run as an ordinary process, so a
broken session costs time, never a wrong or lost answer. Sessions are recycled after
MAX_REQUESTS answers or MAX_AGE seconds, so a configuration change reaches them. `stats` says
how many there are and what they did (the server's /metrics shows it).

A session holds nothing of an event loop between requests (plain pipes, watched only while a
request reads them), so a transport serves every loop it is used from: a Lambda handler runs
each event in a loop of its own. Sessions end with `aclose()`, or when the pool is garbage (a
transport nobody closed), or when the interpreter exits: none outlives its owner.

A session is started and reaped in the pool's own threads, not on the event loop: Popen (fork,
exec, and the wait for the exec) held the loop ~2 ms per start and the reap after SIGKILL ~1 ms
per stop, which every other request served by that loop waited (bench/session_loop_lag.py; now
~1.4 and ~0.4 ms, most of it the new process's start-up competing for the CPUs and Popen's
Python under the GIL). The SIGKILL itself is sent at once. A start whose request is cancelled
goes on in its thread and its session is ended as soon as it is there: no process outlives it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import secrets
import signal
import subprocess
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field

from transport.base import Command, CommandResult, Interactive, decode_output

logger = logging.getLogger("slurm_graphql.sessions")

MAX_REQUESTS = 10_000
# A session that has not answered within this long is taken for stuck: it is killed and the
# command runs as a process, within what is left of the batch's own timeout. The controller
# answers a `show` in milliseconds; a busy one in well under a second.
ANSWER_TIMEOUT = 5.0
MAX_AGE = 300.0
# An answer larger than this breaks the session (the command then runs as a process): a node
# list of a few thousand nodes is well under it.
MAX_ANSWER = 64 << 20

_Key = tuple[tuple[str, ...], tuple[tuple[str, str], ...]]


@dataclass
class SessionStats:
    """What the sessions did since the transport opened: `started` processes, `answered`
    requests, `failed` ones (the session was killed; the request ran as a process or timed
    out), `declined` answers (the request's `translate` could not vouch for one; it ran as a
    process, the session stays), and how many are `alive` now."""

    started: int = 0
    answered: int = 0
    failed: int = 0
    declined: int = 0
    alive: int = 0


# Hex digits spelt as letters. A marker's program may read its argument as more than text:
# scontrol's `show hostnames` reads a trailing run of digits as a host number, and one past
# 2^64 - 1 prints as 18446744073709551615, so a hex token ending in 20 or more decimal digits
# (about 1 request in 10,000) never came back and its session stalled until the timeout.
_LETTERS = str.maketrans("0123456789abcdef", "ghijklmnopqrstuv")


def end_token() -> str:
    """128 random bits as 32 letters: a word every marker program prints as it was given."""
    return secrets.token_hex(16).translate(_LETTERS)


class _BrokenSession(Exception):
    """The program did not answer as an echoing REPL does (or died): do not reuse it."""


class _Session:
    def __init__(self, program: tuple[str, ...], env: Mapping[str, str]) -> None:
        """Blocks until the program is exec'd (or failed to be): call it off the loop."""
        self.process = subprocess.Popen(
            program,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env),
            start_new_session=True,
        )
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        assert self.process.stderr is not None
        self.stdin = self.process.stdin.fileno()
        self.stdout = self.process.stdout.fileno()
        self.stderr = self.process.stderr.fileno()
        for fd in (self.stdin, self.stdout, self.stderr):
            os.set_blocking(fd, False)
        self.born = time.monotonic()
        self.requests = 0
        # What the program printed after the last answer: the prompt it shows for the next.
        self.carry = b""

    def worn(self) -> bool:
        return self.requests >= MAX_REQUESTS or time.monotonic() - self.born > MAX_AGE

    async def ask(self, request: Interactive) -> tuple[str, str]:
        """(stdout, stderr) of one request; _BrokenSession if the program answered otherwise."""
        self._drain(self.stderr)  # whatever an earlier request left is not this one's
        token = end_token()
        marker = request.marker.replace("{}", token)
        echo = f"{request.prompt}{request.line}\n".encode()
        end = f"{request.prompt}{marker}\n{token}\n".encode()
        self.requests += 1
        try:
            os.write(self.stdin, f"{request.line}\n{marker}\n".encode())
        except (BlockingIOError, BrokenPipeError) as exc:  # a stalled or dead program
            raise _BrokenSession(str(exc)) from exc
        buffer = self.carry
        while (at := buffer.find(end)) < 0:
            if len(buffer) >= len(echo) and not buffer.startswith(echo):
                raise _BrokenSession("the program did not echo the request")
            if len(buffer) > MAX_ANSWER:
                raise _BrokenSession("the answer is too large")
            buffer += await self._read()
        if not buffer.startswith(echo) or at < len(echo):
            raise _BrokenSession("the program did not echo the request")
        self.carry = buffer[at + len(end) :]
        # The stderr pipe already holds the request's errors: the program wrote them, unbuffered,
        # before it read the marker's line, whose echo we have.
        return decode_output(buffer[len(echo) : at]), decode_output(self._drain(self.stderr))

    async def _read(self) -> bytes:
        loop = asyncio.get_running_loop()
        readable: asyncio.Future[None] = loop.create_future()

        def ready() -> None:
            if not readable.done():
                readable.set_result(None)

        loop.add_reader(self.stdout, ready)
        try:
            await readable
        finally:
            loop.remove_reader(self.stdout)
        chunk = self._drain(self.stdout)
        if not chunk:
            raise _BrokenSession("the program closed its output")
        return chunk

    @staticmethod
    def _drain(fd: int) -> bytes:
        chunks = []
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(fd, 1 << 16):
                chunks.append(chunk)
        return b"".join(chunks)


def _kill(process: subprocess.Popen[bytes]) -> None:
    """Kill the process group, reap the process and close its pipes (no zombie, no open fd)."""
    _signal(process)
    _reap(process)


def _signal(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def _reap(process: subprocess.Popen[bytes]) -> None:
    """Wait for a killed process and close its pipes: blocks until the kernel has ended it."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=1)  # SIGKILL is not ignorable: this returns within milliseconds
    for pipe in (process.stdin, process.stdout, process.stderr):
        if pipe is not None:
            pipe.close()


@dataclass
class _Kind:
    """The sessions of one program and environment."""

    slots: asyncio.Semaphore
    idle: list[_Session] = field(default_factory=list)


class SessionPool:
    """Sessions by program and environment, at most `size` of each. `environ` is what every
    session's environment starts from (the transport's command environment)."""

    def __init__(
        self, size: int, environ: Mapping[str, str], answer_timeout: float = ANSWER_TIMEOUT
    ) -> None:
        if size < 1 or answer_timeout <= 0:
            raise ValueError("a session pool holds at least one session, answering in time")
        self.size = size
        self.answer_timeout = answer_timeout
        self._environ = dict(environ)
        self._kinds: dict[_Key, _Kind] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        # The live sessions' processes, killed when the pool is collected or at exit.
        self._processes: dict[int, subprocess.Popen[bytes]] = {}
        weakref.finalize(self, _kill_all, self._processes)
        # Starts and reaps, off every event loop (so any loop may await them); its idle threads
        # end when the pool is collected, or at exit once their work is done.
        self._threads = concurrent.futures.ThreadPoolExecutor(size, "scontrol-session")
        self._reaping: set[concurrent.futures.Future[None]] = set()
        self._closed = False
        self.stats = SessionStats()

    async def ask(self, command: Command) -> CommandResult | None:
        """The answer of a session to `command.interactive`, or None when no session could give
        it (the caller then runs the command as a process)."""
        request = command.interactive
        assert request is not None
        if self._closed:
            return None
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # The semaphores wait in one loop; the sessions themselves are loop-free.
            self._loop = loop
            for kind in self._kinds.values():
                kind.slots = asyncio.Semaphore(self.size)
        env = {**self._environ, **command.env}
        key = (request.program, tuple(sorted(env.items())))
        kind = self._kinds.setdefault(key, _Kind(asyncio.Semaphore(self.size)))
        async with kind.slots:
            session = kind.idle.pop() if kind.idle else None
            answered = False
            try:
                if session is None:
                    session = await self._start(request.program, env)
                async with asyncio.timeout(self.answer_timeout):
                    stdout, stderr = await session.ask(request)
                answered = True
            except (_BrokenSession, OSError, TimeoutError) as exc:
                reason = str(exc) or f"no answer within {self.answer_timeout:g} s"
                logger.warning("scontrol session dropped (%s): %s", request.line, reason)
                return None
            finally:
                # A session that did not answer (timed out, cancelled, broke the protocol) is in
                # an unknown state: it is killed, never handed to the next request.
                if not answered:
                    self.stats.failed += 1
                if session is not None and (not answered or self._closed or session.worn()):
                    self._end(session)
                elif session is not None:
                    kind.idle.append(session)
        if request.translate is not None:
            translated = request.translate(stdout)
            if translated is None:
                self.stats.declined += 1
                return None
            stdout = translated
        self.stats.answered += 1
        # The program's own exit code is not per request: a request that printed nothing but an
        # error failed, as the program run for it alone would have (`scontrol show job <unknown>`
        # exits 1); anything on stdout is an answer, warnings or not.
        code = 1 if stderr and not stdout else 0
        return CommandResult(command.argv, stdout, stderr, code)

    async def _start(self, program: tuple[str, ...], env: Mapping[str, str]) -> _Session:
        starting = self._threads.submit(self._started, program, env)
        try:
            session = await asyncio.wrap_future(starting)
        except asyncio.CancelledError:
            # A start not yet begun is cancelled with the request; one under way goes on, and
            # the session it makes is nobody's: it ends as soon as it is there (uncounted: the
            # stats are the loop's, and this may run in the starting thread).
            starting.add_done_callback(self._abandoned)
            raise
        self.stats.started += 1
        self.stats.alive += 1
        return session

    def _started(self, program: tuple[str, ...], env: Mapping[str, str]) -> _Session:
        session = _Session(program, env)
        # Known at once, from this thread: whatever becomes of the request, the process is
        # killed with the pool (collected, or at exit).
        self._processes[session.process.pid] = session.process
        return session

    def _abandoned(self, starting: concurrent.futures.Future[_Session]) -> None:
        """In the starting thread, or on the loop if the start was done already."""
        if not starting.cancelled() and starting.exception() is None:
            self._end_process(starting.result().process)

    def _end(self, session: _Session) -> None:
        self.stats.alive -= 1
        self._end_process(session.process)

    def _end_process(self, process: subprocess.Popen[bytes]) -> None:
        """SIGKILL now; the reap (waiting for the kernel to end it) in a thread."""
        # Out of the map before the SIGKILL: once reaped, its pid may be another process's.
        self._processes.pop(process.pid, None)
        _signal(process)
        reaping = self._threads.submit(_reap, process)
        self._reaping.add(reaping)
        reaping.add_done_callback(self._reaping.discard)

    async def aclose(self) -> None:
        """End the idle sessions and wait until every session ended so far is reaped (a session
        in use ends when its request does)."""
        self._closed = True
        for kind in self._kinds.values():
            while kind.idle:
                self._end(kind.idle.pop())
        if self._reaping:
            await asyncio.wait([asyncio.wrap_future(f) for f in list(self._reaping)])


def _kill_all(processes: dict[int, subprocess.Popen[bytes]]) -> None:
    for process in list(processes.values()):
        _kill(process)
    processes.clear()
