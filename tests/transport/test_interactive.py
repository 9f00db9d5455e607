"""local:// answering `Command.interactive` from long-lived programs: real scontrol on the local
cluster, and real programs that stall, die or answer otherwise than an echoing REPL."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from resolvers.ids import validate_job_id
from resolvers.slurm.interactive import MARKER, PROMPT, scontrol_session
from resolvers.slurm.job_details import show_job_command
from resolvers.slurm.nodes import parse_nodes, show_nodes_command
from resolvers.slurm.partitions import parse_partitions, show_partitions_command
from resolvers.slurm.version import version_command
from transport import Command, TransportTimeout
from transport.base import Interactive
from transport.interactive import end_token
from transport.local import LocalTransport

ROOT = Path(__file__).resolve().parents[2]


def children(name: str, zombies: bool = False) -> set[int]:
    """PIDs of this process's children running `name` (zombies too if asked)."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)
        except FileNotFoundError:
            continue
        comm = fields[0].split("(", 1)[1]
        state, ppid = fields[1].split()[:2]
        if comm == name and int(ppid) == os.getpid() and (zombies or state != "Z"):
            found.add(int(entry))
    return found


@pytest.fixture
def forged_job(slurm_cluster: str, unix_users: None) -> Iterator[str]:
    """alice's held job whose name and comment print lines that look like the end of an
    answer: the marker's echo and its token, for tokens she chose."""
    name = f"evil\n{PROMPT}{MARKER.format('0123456789abcdef')}\n0123456789abcdef"
    comment = f"c\n{PROMPT}{MARKER.format('ffff')}\nffff"
    done = subprocess.run(
        ["runuser", "-u", "alice", "--", "sbatch", "--parsable", "-H", "-J", name,
         f"--comment={comment}", "-o", "/dev/null", "--wrap", "true"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    job_id = done.stdout.strip()
    yield job_id
    subprocess.run(["scancel", job_id], check=False)


async def test_sessions_answer_what_the_processes_print(slurm_cluster: str) -> None:
    """show node, show partition and version from sessions read as from their own processes;
    a second ask reuses the session (no new process)."""
    before = children("scontrol")  # other tests' transports may not be collected yet
    sessions, processes = LocalTransport(), LocalTransport(sessions=0)
    commands = [show_nodes_command(), show_partitions_command(), version_command()]
    try:
        for _ in range(2):
            asked = await sessions.run(commands)
            ran = await processes.run(commands)
            assert [r.exit_code for r in asked] == [0, 0, 0] == [r.exit_code for r in ran]
            nodes = [(n.name, n.state, n.cpus) for n in parse_nodes(asked[0].stdout)]
            assert nodes == [(n.name, n.state, n.cpus) for n in parse_nodes(ran[0].stdout)]
            assert nodes
            assert parse_partitions(asked[1].stdout) == parse_partitions(ran[1].stdout)
            assert asked[2].stdout == ran[2].stdout
            assert asked[2].stdout.startswith("slurm")
        stats = sessions.session_stats
        assert stats is not None
        assert (stats.started, stats.answered, stats.failed, stats.alive) == (3, 6, 0, 3)
        ours = children("scontrol") - before
        assert len(ours) == 3
    finally:
        await sessions.aclose()
    assert sessions.session_stats is not None
    assert sessions.session_stats.alive == 0
    assert not ours & children("scontrol")


async def test_an_error_reads_as_the_process_exit(slurm_cluster: str) -> None:
    """A job Slurm does not hold: nothing on stdout, Slurm's error on stderr, exit 1, as
    `scontrol show job` run alone; the session stays usable."""
    transport = LocalTransport()
    try:
        [asked] = await transport.run([show_job_command("999999999")])
        [ran] = await LocalTransport(sessions=0).run([show_job_command("999999999")])
        assert (asked.stdout, asked.exit_code) == ("", 1) == (ran.stdout, ran.exit_code)
        assert asked.stderr == ran.stderr
        assert "Invalid job id" in asked.stderr
        [nodes] = await transport.run([show_nodes_command()])
        assert parse_nodes(nodes.stdout)
        assert transport.session_stats is not None
        assert transport.session_stats.failed == 0
    finally:
        await transport.aclose()


def test_the_marker_prints_every_end_token_as_given(slurm_cluster: str) -> None:
    """scontrol's `show hostnames` reads a word ending in digits as a host number: a hex token
    ending in 21 of them came back as 2^64 - 1, never matched, and stalled its session until
    the timeout (1 request in ~10,000). End tokens are letters only, which it prints as given."""
    overflowing = "384f2c0915b" + "647646142370097284145"
    tokens = [overflowing, *(end_token() for _ in range(200))]
    lines = [MARKER.format(token) for token in tokens]
    done = subprocess.run(
        ["scontrol"], input="\n".join(lines) + "\n", capture_output=True, text=True, check=True
    )
    printed = [line for line in done.stdout.splitlines() if not line.startswith(PROMPT)]
    assert printed[0] == "384f2c0915b018446744073709551615"  # Slurm's reading, not the token
    assert printed[1:] == tokens[1:]
    assert all(len(t) == 32 and t.isalpha() and t.islower() for t in tokens[1:])
    assert len(set(tokens[1:])) == 200


async def test_a_forged_end_of_answer_in_a_job_does_not_end_it(forged_job: str) -> None:
    """alice names her job (and comments it) with the marker's echo and a token of her own:
    the answer still runs to the session's own token, equal to what the process prints, and
    the next answer from the same session is whole too."""
    transport = LocalTransport()
    try:
        [asked] = await transport.run([show_job_command(forged_job)])
        [ran] = await LocalTransport(sessions=0).run([show_job_command(forged_job)])
        assert asked.stdout == ran.stdout
        assert "0123456789abcdef UserId=alice" in asked.stdout
        assert "StdOut=/dev/null" in asked.stdout.rpartition("ffff")[2]
        [again] = await transport.run([show_job_command(forged_job)])
        assert again.stdout == ran.stdout
        assert transport.session_stats is not None
        assert transport.session_stats.started == 1
    finally:
        await transport.aclose()


async def test_otherwise_follows_an_empty_session_answer(slurm_cluster: str) -> None:
    """`otherwise` runs after a session's answer as after a process's: only when it printed
    nothing (job(id)'s accounting lookup rides on its live lookup this way)."""
    transport = LocalTransport()
    fallback = Command(("echo", "from accounting"))
    try:
        unknown = replace(show_job_command("999999999"), otherwise=fallback)
        [result] = await transport.run([unknown])
        assert result.otherwise is not None
        assert result.otherwise.stdout == "from accounting\n"
        [listed] = await transport.run([replace(show_nodes_command(), otherwise=fallback)])
        assert listed.otherwise is None
        assert parse_nodes(listed.stdout)
        assert transport.session_stats is not None
        assert transport.session_stats.answered == 2
    finally:
        await transport.aclose()


@pytest.mark.parametrize(
    "line",
    [
        "show node\nshutdown",  # a second command on the next line
        "show node\rshutdown",
        "show node; shutdown",
        "!!",  # readline's history expansion of the last command
        "show job 1\x00",
        "show job 1 \\",
        "show job 'x'",
        "",
        "show job " + "1" * 300,
    ],
)
def test_a_request_line_cannot_say_more_than_one_show(line: str) -> None:
    """What a session is asked is one line of plain words: nothing a REPL or its line editor
    would read as a second command (scontrol as the server's user may update or shut down)."""
    with pytest.raises(ValueError, match="interactive request line"):
        scontrol_session(("--oneliner",), line)


@pytest.mark.parametrize("job_id", ["1", "4294967295", "7_3", "7_[1-5%2]", "7_[1,3-4]", "12+1"])
def test_every_job_id_form_makes_a_request_line(job_id: str) -> None:
    """The ids resolvers/ids.py accepts are lines a session may be asked."""
    command = show_job_command(validate_job_id(job_id))
    assert command.interactive is not None
    assert command.interactive.line == f"show job {job_id}"


def test_an_interactive_command_runs_as_the_servers_user_alone() -> None:
    """A session is shared by every request: a command for another user, with stdin or a
    lock, cannot be answered by one; a marker without its token's place is refused."""
    session = scontrol_session((), "show node")
    argv = ("scontrol", "show", "node")
    for extra in ({"user": "alice"}, {"stdin": b""}, {"lock": "submit"}):
        with pytest.raises(ValueError, match="transport's user"):
            Command(argv, interactive=session, **extra)
    with pytest.raises(ValueError, match="token"):
        Interactive(("scontrol",), "show node", "show hostnames", PROMPT)
    with pytest.raises(ValueError, match="prompt"):
        Interactive(("scontrol",), "show node", MARKER, "scontrol:\n")


async def test_a_stalled_session_is_killed_and_the_next_request_gets_a_new_one() -> None:
    """A program that never answers holds its request until the batch's timeout, no longer:
    it is killed, its process gone, and the next request starts another."""
    stalls = Command(("true",), interactive=Interactive(("sleep", "60"), "x", "y {}", "> "))
    transport = LocalTransport(timeout=1)
    try:
        for _ in range(2):
            with pytest.raises(TransportTimeout):
                await transport.run([stalls])
            await asyncio.sleep(0.2)  # the reaper's turn
            assert not children("sleep")
        stats = transport.session_stats
        assert stats is not None
        assert (stats.started, stats.failed, stats.alive, stats.answered) == (2, 2, 0, 0)
    finally:
        await transport.aclose()


async def test_a_session_slower_than_its_answer_timeout_yields_to_a_process() -> None:
    """A session that does not answer within its own timeout (well inside the batch's) is
    killed and the command runs as a process: a stuck session costs its timeout, no more."""
    stalls = Command(
        ("echo", "from the process"), interactive=Interactive(("sleep", "60"), "x", "y {}", "> ")
    )
    transport = LocalTransport(timeout=30, session_timeout=0.5)
    try:
        started = time.monotonic()
        [result] = await transport.run([stalls])
        assert time.monotonic() - started < 5
        assert (result.stdout, result.exit_code) == ("from the process\n", 0)
        assert transport.session_stats is not None
        assert (transport.session_stats.failed, transport.session_stats.alive) == (1, 0)
    finally:
        await transport.aclose()


async def test_a_program_that_is_no_echoing_repl_falls_back_to_a_process() -> None:
    """`cat` echoes the request without the prompt: the session is dropped and the command
    runs as its own process, whose output is the answer."""
    command = Command(
        ("echo", "from the process"), interactive=Interactive(("cat",), "x", "y {}", "> ")
    )
    transport = LocalTransport()
    try:
        [result] = await transport.run([command])
        assert (result.stdout, result.exit_code) == ("from the process\n", 0)
        assert transport.session_stats is not None
        assert (transport.session_stats.failed, transport.session_stats.alive) == (1, 0)
    finally:
        await transport.aclose()


async def test_a_killed_session_costs_one_process_and_is_replaced(slurm_cluster: str) -> None:
    """kill -9 of a session between requests: the next request sees its end, runs as a process
    (same answer), and the one after has a new session."""
    before = children("scontrol")
    transport = LocalTransport()
    try:
        [first] = await transport.run([show_nodes_command()])
        [pid] = children("scontrol") - before
        os.kill(pid, signal.SIGKILL)
        await asyncio.sleep(0.2)
        [second] = await transport.run([show_nodes_command()])
        [third] = await transport.run([show_nodes_command()])
        names = [n.name for n in parse_nodes(first.stdout)]
        assert [n.name for n in parse_nodes(second.stdout)] == names
        assert [n.name for n in parse_nodes(third.stdout)] == names
        stats = transport.session_stats
        assert stats is not None
        assert (stats.started, stats.failed, stats.answered, stats.alive) == (2, 1, 2, 1)
    finally:
        await transport.aclose()


async def test_concurrent_requests_share_at_most_the_pool_size(slurm_cluster: str) -> None:
    """Twenty concurrent lookups through a pool of two: two scontrol processes, all answered."""
    before = children("scontrol")
    transport = LocalTransport(sessions=2)
    try:
        results = await asyncio.gather(*(transport.run([show_nodes_command()]) for _ in range(20)))
        assert all(parse_nodes(r.stdout) for [r] in results)
        assert transport.session_stats is not None
        assert transport.session_stats.started == 2
        assert len(children("scontrol") - before) == 2
    finally:
        await transport.aclose()


async def test_a_transport_nobody_closes_leaves_no_session_behind(slurm_cluster: str) -> None:
    """A transport dropped without aclose(): its sessions are killed when it is collected."""
    before = children("scontrol")
    transport = LocalTransport()
    await transport.run([show_nodes_command()])
    ours = children("scontrol") - before
    assert len(ours) == 1
    del transport
    gc.collect()
    await asyncio.sleep(0.2)  # the child watcher reaps them
    assert not ours & children("scontrol")


async def test_requests_cancelled_while_their_sessions_start_leave_no_process() -> None:
    """Requests cancelled at every point of a session's start (waiting for a thread, while the
    thread forks and execs, just after) and of its first answer: none leaves a process behind,
    not even a zombie, and the pool counts none alive."""
    stalls = Command(("true",), interactive=Interactive(("sleep", "60"), "x", "y {}", "> "))
    transport = LocalTransport(sessions=4)
    try:
        for delay in (*([0.0] * 12), 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05):
            tasks = [asyncio.create_task(transport.run([stalls])) for _ in range(4)]
            for _ in range(12 if delay else len(tasks)):
                await asyncio.sleep(delay)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for _ in range(100):  # an abandoned start is ended by its thread once it is done
            if not children("sleep", zombies=True):
                break
            await asyncio.sleep(0.05)
        assert not children("sleep", zombies=True)
        assert transport.session_stats is not None
        assert transport.session_stats.alive == 0
    finally:
        await transport.aclose()


def test_sessions_end_with_the_interpreter(slurm_cluster: str) -> None:
    """A process that exits without closing its transport leaves no session behind: its idle
    scontrol is killed and reaped at exit, not left to whoever adopts it."""
    script = (
        "import asyncio, os\n"
        "from transport.local import LocalTransport\n"
        "from resolvers.slurm.version import version_command\n"
        "from tests.transport.test_interactive import children\n"
        "transport = LocalTransport()\n"
        "asyncio.run(transport.run([version_command()]))\n"
        "print(*children('scontrol'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    pids = [int(pid) for pid in done.stdout.split()]
    assert len(pids) == 1, done.stderr
    assert not os.path.exists(f"/proc/{pids[0]}")


async def test_a_session_serves_every_event_loop(slurm_cluster: str) -> None:
    """A Lambda handler runs each event in a loop of its own: the session started in the first
    loop answers in the next (it holds nothing of a loop between requests)."""
    transport = LocalTransport()
    answers = []

    def in_new_loop() -> None:
        answers.extend(asyncio.run(transport.run([show_nodes_command()])))

    await asyncio.to_thread(in_new_loop)
    await asyncio.to_thread(in_new_loop)
    assert all(parse_nodes(answer.stdout) for answer in answers)
    stats = transport.session_stats
    assert stats is not None
    assert (stats.started, stats.answered, stats.failed, stats.alive) == (1, 2, 0, 1)
    await transport.aclose()


async def test_a_session_sees_a_change_made_between_two_asks(slurm_cluster: str) -> None:
    """scontrol keeps its last node list and asks slurmctld only for what changed since (the
    controller answers "no change" only if nothing changed after the second before that list
    was packed): a node comment set between two asks reads at the second, as a new process
    would read it. (A comment, not a drain: other tests, running alongside, drain nodes.)"""
    transport, admin = LocalTransport(), LocalTransport(sessions=0)
    comment = f"session-{os.getpid()}"
    [before] = await transport.run([show_nodes_command()])
    name = parse_nodes(before.stdout)[0].name
    try:
        [noted] = await admin.run(
            [Command(("scontrol", "update", f"NodeName={name}", f"Comment={comment}"))]
        )
        assert noted.ok, noted.stderr
        [after] = await transport.run([show_nodes_command()])
        [line] = [x for x in after.stdout.splitlines() if x.startswith(f"NodeName={name} ")]
        assert f"Comment={comment}" in line
        assert f"Comment={comment}" not in before.stdout
        assert transport.session_stats is not None
        assert transport.session_stats.started == 1
    finally:
        await admin.run([Command(("scontrol", "update", f"NodeName={name}", "Comment="))])
        await transport.aclose()
