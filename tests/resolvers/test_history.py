"""History, steps, efficiency, accounts, QOS, associations and fair-share parsed from captures of
the real cluster with slurmdbd (scripts/capture-golden), and the sacct command a filter builds."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from graphql import FieldNode, FragmentDefinitionNode, OperationDefinitionNode, parse

from resolvers.history import HistoryFilterValues, _from_ids, window
from resolvers.history_cursor import (
    SLACK,
    HistoryCursor,
    decode_history_cursor,
    encode_history_cursor,
    pushed_start,
)
from resolvers.ids import BadUserInput
from resolvers.pagination import encode_cursor
from resolvers.plan import names_beneath
from resolvers.slurm.errors import ParseError
from resolvers.slurm.history import (
    HISTORY_FIELDS,
    MAX_IDS,
    HistoryQuery,
    HistoryRecord,
    efficiency,
    history_command,
    history_record,
    history_rows,
    parse_cpu_time,
    parse_history,
    parse_size,
)
from resolvers.slurm.history_listing import LISTING_FIELDS, Listed, parse_listing
from resolvers.slurm.jobs import new_boundary
from resolvers.slurm.sacct import delimiter
from resolvers.slurm.sacctmgr import (
    parse_accounts,
    parse_associations,
    parse_qos,
    parse_sshare,
)
from tests.support.sacct import sacct_boundary, sacct_format
from transport.base import Command, CommandResult

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
VERSIONS = sorted(path.parent.name for path in GOLDEN.glob("*/history"))
WINDOW = HistoryQuery(start=1_796_000_000, end=1_796_086_400)


def read(version: str, command: str, case: str) -> str:
    return (GOLDEN / version / command / f"{case}.stdout").read_text()


def history(version: str, case: str) -> list[HistoryRecord]:
    """A captured history case, parsed with the delimiter its command asked for."""
    argv = json.loads((GOLDEN / version / "history" / f"{case}.argv.json").read_text())["argv"]
    return parse_history(read(version, "history", case), sacct_boundary(argv), sacct_format(argv))


# Rows these tests write themselves are delimited as a call's would be.
BOUNDARY = new_boundary()


@pytest.mark.parametrize("version", VERSIONS)
def test_history_has_each_job_with_its_steps_and_final_state(version: str) -> None:
    """The captured jobs come back once each, ordered by id, with their steps and exit codes."""
    jobs = {job.name: job for job in history(version, "jobs")}
    assert [j.job_id for j in jobs.values()] == sorted(j.job_id for j in jobs.values())
    assert (jobs["fails"].state, jobs["fails"].exit_code) == ("FAILED", 3)
    assert jobs["bob's"].state == "CANCELLED" and jobs["bob's"].user == "bob"
    two = jobs["two steps"]
    assert two.user == "alice" and two.account == "physics" and two.qos == "normal"
    named = {step.step_id: step.name for step in two.steps}
    assert named["batch"] == "batch" and {named["0"], named["1"]} == {"true", "sleep"}
    assert all(step.state == "COMPLETED" for step in two.steps)


@pytest.mark.parametrize("version", VERSIONS)
def test_efficiency_is_what_seff_computes(version: str) -> None:
    """The job that held 50 MB for 6 s: MaxRSS over 50 MiB against its 100 MiB, CPU time over
    elapsed times CPUs."""
    jobs = {job.name: job for job in history(version, "jobs")}
    job = jobs["uses memory"]
    figures = efficiency(job)
    assert figures is not None
    assert job.memory_bytes == 100 << 20
    assert figures.max_rss_bytes is not None and figures.max_rss_bytes > 50 << 20
    assert figures.memory_efficiency_percent == round(100 * figures.max_rss_bytes / (100 << 20), 2)
    assert figures.elapsed_seconds >= 6 and figures.cpu_seconds > 0
    assert figures.cpu_efficiency_percent == round(
        100 * figures.cpu_seconds / (figures.elapsed_seconds * job.num_cpus), 2
    )


@pytest.mark.parametrize("version", VERSIONS)
def test_slurm_itself_shows_bob_alices_history(version: str) -> None:
    """Without PrivateData, bob's own sacct --user=alice lists alice's jobs: running commands as
    the requesting user is not enough, the API must narrow the users itself (visibility `own`)."""
    asked = history(version, "bob-asks-for-alice")
    assert asked and {job.user for job in asked} == {"alice"}


@pytest.mark.parametrize("version", VERSIONS)
def test_an_unknown_account_gives_no_jobs(version: str) -> None:
    """sacct --accounts=nosuch prints nothing and exits 0."""
    assert history(version, "unknown-account") == []


@pytest.mark.parametrize("version", VERSIONS)
def test_accounts_qos_associations_and_shares(version: str) -> None:
    """What scripts/local-cluster provisions, as sacctmgr and sshare print it."""
    accounts = {a.name for a in parse_accounts(read(version, "sacctmgr", "accounts"))}
    assert {"physics", "chem", "root"} <= accounts
    qos = {q.name: q for q in parse_qos(read(version, "sacctmgr", "qos"))}
    assert qos["long"].max_wall_minutes == 7 * 1440 and qos["long"].priority == 10
    everyone = parse_associations(read(version, "sacctmgr", "associations"))
    assert {(a.user, a.account) for a in everyone if a.user} >= {
        ("alice", "physics"),
        ("bob", "physics"),
        ("carol", "chem"),
    }
    [alice] = parse_associations(read(version, "sacctmgr", "associations-alice"))
    assert (alice.account, alice.qos, alice.default_qos) == (
        "physics",
        ("long", "normal"),
        "normal",
    )
    shares = parse_sshare(read(version, "sshare", "alice"))
    assert [(s.account, s.user) for s in shares if s.user] == [("physics", "alice")]
    assert {s.account for s in parse_sshare(read(version, "sshare", "all"))} >= {"physics", "chem"}


def test_every_filter_is_pushed_into_one_sacct_call() -> None:
    """Users, accounts, partitions, QOS, states, names and ids are options of the one command."""
    query = HistoryQuery(
        start=WINDOW.start,
        end=WINDOW.end,
        users=("alice",),
        accounts=("physics",),
        partitions=("debug", "batch"),
        qos=("normal",),
        states=("FAILED", "TIMEOUT"),
        names=("my job",),
        job_ids=("42", "7_3"),
    )
    argv = history_command(query, BOUNDARY).argv
    assert argv[0] == "sacct" and "--allusers" not in argv
    for option in (
        "--user=alice",
        "--accounts=physics",
        "--partition=debug,batch",
        "--qos=normal",
        "--state=FAILED,TIMEOUT",
        "--name=my job",
        "--jobs=42,7_3",
        "--starttime=2026-11-30T00:53:20",
        "--endtime=2026-12-01T00:53:20",
    ):
        assert option in argv
    assert "--allusers" in history_command(WINDOW, BOUNDARY).argv
    assert history_command(WINDOW, BOUNDARY).env["TZ"] == "UTC"


HOSTILE = [
    {"users": ("--foo",)},
    {"users": ("alice,bob",)},
    {"accounts": ("-physics",)},
    {"partitions": ("x" * 10_240,)},
    {"qos": ("normal;rm -rf /",)},
    {"qos": ("",)},
    {"names": ("a,b",)},
    {"names": ("x" * 10_240,)},
    {"names": ("line\nbreak",)},
    {"job_ids": ("1;2",)},
    {"job_ids": ("now-1days",)},
    {"job_ids": ("--jobs=1",)},
    {"states": ("running",)},
    {"states": ("RUNNING,FAILED",)},
    {"users": tuple(f"u{i}" for i in range(101))},
]


@pytest.mark.parametrize("hostile", HOSTILE, ids=lambda h: repr(h)[:40])
def test_hostile_filter_values_are_refused_before_any_argv(hostile: dict[str, object]) -> None:
    """Option-like, comma-joined, control-byte or 10 KB values never reach sacct's argv."""
    with pytest.raises(BadUserInput):
        history_command(HistoryQuery(start=WINDOW.start, end=WINDOW.end, **hostile), BOUNDARY)  # type: ignore[arg-type]  # the hostile values are of the right types


def test_a_window_ending_before_it_starts_is_refused() -> None:
    """end < start: BAD_USER_INPUT, no sacct."""
    with pytest.raises(BadUserInput):
        history_command(HistoryQuery(start=WINDOW.end, end=WINDOW.start), BOUNDARY)


def _row(raw_id: str, name: str, user: str = "alice") -> str:
    values = {field: "" for field in HISTORY_FIELDS}
    values.update(JobIDRaw=raw_id, JobID=raw_id, State="COMPLETED", User=user, JobName=name)
    return delimiter(BOUNDARY).join(values[field] for field in HISTORY_FIELDS)


def test_a_name_forging_a_row_of_its_own_job_or_a_step_is_refused() -> None:
    """A job name holding a newline and a whole row with its job's id under another user (or a
    step seen twice in one record, or a step without its job) makes the output untrusted; a
    plain newline stays in the name. (Rows here carry the call's boundary, which a real name
    cannot: this is the second line of defence.)"""
    [job] = parse_history(_row("5", "two\nlines") + "\n", BOUNDARY)
    assert job.name == "two\nlines"
    with pytest.raises(ParseError):
        parse_history(_row("5", "x\n" + _row("5", "y", user="bob")), BOUNDARY)
    with pytest.raises(ParseError):
        parse_history(_row("5", "x") + "\n" + _row("5.0", "s\n" + _row("5.0", "t")), BOUNDARY)
    with pytest.raises(ParseError):
        parse_history(_row("6.batch", "orphan step"), BOUNDARY)


def test_a_name_cannot_plant_a_job_in_anothers_history() -> None:
    """bob's job name holds a newline and a whole row of a job id not in the output, owned by
    alice, with the plain \\x1f a name can write: without the call's random boundary it stays
    part of bob's name, and alice's history shows no planted job."""
    planted = _row("6", "planted", user="alice").replace(delimiter(BOUNDARY), "\x1f")
    [job] = parse_history(_row("5", "x\n" + planted, user="bob") + "\n", BOUNDARY)
    assert (job.job_id, job.user) == (5, "bob") and "planted" in job.name


def test_sizes_and_cpu_times_in_sacct_forms() -> None:
    """sacct's sizes are 1024-based with a unit letter; TotalCPU has three clock forms."""
    assert parse_size("62353408") == 62353408
    assert parse_size("100M") == 100 << 20
    assert parse_size("1.5G") == 3 << 29
    assert parse_size("") is None and parse_size("12X") is None
    assert parse_cpu_time("00:00.102") == pytest.approx(0.102)
    assert parse_cpu_time("01:02:03") == 3723
    assert parse_cpu_time("2-00:00:01") == 2 * 86400 + 1
    assert parse_cpu_time("") is None


def test_the_default_window_is_the_last_day_and_bounds_narrow_it() -> None:
    """No bounds: the last 24 hours (and a minute of clock slack); given bounds win."""
    now = 1_796_000_000
    assert window(HistoryFilterValues(), now, 31) == (now - 86_400, now + 60)
    values = HistoryFilterValues(submitted_after=now - 3600, ended_before=now - 60)
    assert window(values, now, 31) == (now - 3600, now - 60)
    with pytest.raises(BadUserInput):
        window(HistoryFilterValues(ended_after=now - 40 * 86_400), now, 31)


def test_a_listing_without_steps_asks_slurmdbd_for_none() -> None:
    """`steps=False` adds --allocations (slurmdbd then reads no step); the default keeps them."""
    assert "--allocations" not in history_command(WINDOW, BOUNDARY).argv
    assert "--allocations" in history_command(WINDOW, BOUNDARY, steps=False).argv


@pytest.mark.parametrize("version", VERSIONS)
def test_rows_split_cheaply_read_as_the_full_parse(version: str) -> None:
    """history_rows' id, user and times are the full records'; history_record reads the rest."""
    argv = json.loads((GOLDEN / version / "history" / "jobs.argv.json").read_text())["argv"]
    rows = history_rows(read(version, "history", "jobs"), sacct_boundary(argv), sacct_format(argv))
    records = history(version, "jobs")
    assert [(r.job_id, r.user, r.submit_time, r.end_time) for r in rows] == [
        (r.job_id, r.user, r.submit_time, r.end_time) for r in records
    ]
    assert [history_record(row) for row in rows] == records
    assert any(r.steps for r in records)


def test_names_beneath_follows_fragments() -> None:
    """A field named only inside a fragment spread or an inline fragment still counts."""
    document = parse(
        "query { cluster { jobHistory { edges { node { ...F ... on Job { state } } } } } }"
        " fragment F on Job { efficiency { cpuSeconds } }"
    )
    [operation, fragment] = document.definitions
    assert isinstance(operation, OperationDefinitionNode)
    assert isinstance(fragment, FragmentDefinitionNode)
    [cluster] = operation.selection_set.selections
    assert isinstance(cluster, FieldNode)
    names = names_beneath([cluster], {fragment.name.value: fragment})
    assert {"efficiency", "cpuSeconds", "state", "jobHistory"} <= names
    assert "steps" not in names


def test_a_requeued_job_reads_as_its_last_run_and_keeps_its_first_submit() -> None:
    """With --duplicates, each run of a requeued job comes with its own steps: the job reads as
    the run submitted last (what sacct without -D shows), with that run's steps, and keeps the
    first run's Submit for its cursor."""

    first = _row("5", "requeued").split(delimiter(BOUNDARY))
    first[HISTORY_FIELDS.index("Submit")] = "1000"
    first[HISTORY_FIELDS.index("State")] = "REQUEUED"
    second = list(first)
    second[HISTORY_FIELDS.index("Submit")] = "2000"
    second[HISTORY_FIELDS.index("State")] = "PENDING"
    step = _row("5.batch", "batch").split(delimiter(BOUNDARY))
    text = "\n".join(delimiter(BOUNDARY).join(r) for r in (first, step, second)) + "\n"
    [row] = history_rows(text, BOUNDARY)
    assert (row.submit_time, row.earliest_submit) == (2000, 1000)
    [job] = parse_history(text, BOUNDARY)
    assert (job.state, job.steps) == ("PENDING", ())
    # The same runs in the other order read the same.
    again = "\n".join(delimiter(BOUNDARY).join(r) for r in (second, first, step)) + "\n"
    assert history_rows(again, BOUNDARY)[0].earliest_submit == 1000
    assert parse_history(again, BOUNDARY)[0].state == "PENDING"


def test_history_cursors_carry_a_time_that_only_narrows() -> None:
    """A history cursor names its job, the earliest Submit of its runs and its page's stride; a
    cursor issued before the stride, and a plain job cursor, still read; anything else is
    BAD_USER_INPUT; the pushed --starttime is never earlier than the filter's, whatever the
    cursor says."""
    issued = encode_history_cursor(42, 1_796_000_000, 3)
    assert decode_history_cursor(issued) == HistoryCursor(42, 1_796_000_000, 3)
    older = base64.urlsafe_b64encode(b"history:42:1796000000").decode()
    assert decode_history_cursor(older) == HistoryCursor(42, 1_796_000_000, None)
    assert decode_history_cursor(encode_history_cursor(42, None)) == HistoryCursor(42)
    assert decode_history_cursor(encode_cursor(7)) == HistoryCursor(7)
    for forged in ("history:1:-5", "history:x:1", "history:1", "job:", "history:1:2:3:4"):
        with pytest.raises(BadUserInput):
            decode_history_cursor(base64.urlsafe_b64encode(forged.encode()).decode())
    assert pushed_start(1000, 0) == 1000
    assert pushed_start(1000, None) == 1000
    assert pushed_start(1000, 5000) == 5000 - SLACK


@pytest.mark.parametrize("version", VERSIONS)
def test_a_page_of_next_ids_reads_as_the_window_does(version: str) -> None:
    """A page after a cursor asks for the next ids without the QOS column (which costs sacct
    slurmdbd's QOS list): the captured jobs read as with it, QOS unknown, each eligible; the
    window's first call (job rows only) reads the same jobs, without steps."""
    full = {job.job_id: job for job in history(version, "jobs")}
    listed = {job.job_id: job for job in history(version, "next-ids")}
    assert set(full) <= set(listed)
    for job_id, job in full.items():
        assert listed[job_id] == replace(job, qos=None)
    light = history(version, "jobs-without-steps")
    assert [job.job_id for job in light] == sorted(full)
    assert all(job.steps == () for job in light)
    argv = json.loads((GOLDEN / version / "history" / "next-ids.argv.json").read_text())["argv"]
    rows = history_rows(
        read(version, "history", "next-ids"), sacct_boundary(argv), sacct_format(argv)
    )
    assert all(row.eligible_time for row in rows)
    assert (
        history_rows(
            read(version, "history", "next-ids"),
            sacct_boundary(argv),
            sacct_format(argv),
            eligible_before=min(row.eligible_time or 0 for row in rows),
        )
        == []
    )


class _Silent:
    """A transport whose sacct finds nothing, recording its batches: the chunking below needs
    more than MAX_IDS jobs on one page, which the test clusters do not hold."""

    url = "silent://"

    def __init__(self) -> None:
        self.batches: list[list[Command]] = []

    async def run(self, commands: Sequence[Command]) -> list[CommandResult]:
        self.batches.append(list(commands))
        return [CommandResult(c.argv, "", "", 0) for c in commands]

    async def aclose(self) -> None:
        return None


async def test_more_ids_than_one_sacct_takes_go_in_one_round_trip_of_several() -> None:
    """A page's steps for more than MAX_IDS jobs: sacct of at most MAX_IDS ids each, all in
    the one round trip, as the requester."""
    transport = _Silent()
    ids = list(range(1, 2 * MAX_IDS + 2))
    assert await _from_ids(transport, "alice", WINDOW, ids, steps=True, qos=False) == []
    [batch] = transport.batches
    listed = [next(a for a in c.argv if a.startswith("--jobs=")) for c in batch]
    assert [len(a.split(",")) for a in listed] == [MAX_IDS, MAX_IDS, 1]
    assert all(c.user == "alice" for c in batch)


@pytest.mark.parametrize("version", VERSIONS)
def test_a_window_listing_chooses_the_same_jobs(version: str) -> None:
    """A window's listing (the captures have UID and Eligible, which the listing no longer asks
    for, and no JobID, which it does) reads the jobs, Submit and End the full rows have: a page is
    chosen from it as from them."""
    listing_argv = json.loads(
        (GOLDEN / version / "history" / "window-listing.argv.json").read_text()
    )["argv"]
    fields = sacct_format(listing_argv)
    # Made before JobID was listed: what a page is chosen by is there.
    assert {"JobIDRaw", "Submit", "End"} <= set(fields) and "--allocations" in listing_argv
    listed = parse_listing(
        read(version, "history", "window-listing"), sacct_boundary(listing_argv), fields
    )
    argv = json.loads((GOLDEN / version / "history" / "jobs.argv.json").read_text())["argv"]
    full = history_rows(read(version, "history", "jobs"), sacct_boundary(argv), sacct_format(argv))
    assert listed == [Listed(r.job_id, r.submit_time, r.end_time) for r in full]


# What each version's capture of the listing as jobHistory runs it must read as: the requeued
# job's id (two records), and the listing, in id order.
CAPTURED_LISTINGS = {
    "22.05": (
        21240,
        [
            Listed(21240, 1796287002, 1796287009),
            Listed(21242, 1796286993, 1796286995, task=3),  # the array's own record: 21242_3
            Listed(21244, 1796286993, 1796286994),
            Listed(21245, 1796286993, 1796286995),
            Listed(21247, 1796287011, 1796287012),
        ],
    ),
    "24.11": (
        20533,
        [
            Listed(20533, 1796294004, 1796294004),  # requeued and cancelled in one second
            Listed(20534, 1796294004, 1796294005, task=3),  # the array's own record: 20534_3
            Listed(20535, 1796294004, 1796294005),
            Listed(20536, 1796294004, 1796294005),
            Listed(20540, 1796294005, 1796294006),
        ],
    ),
}


@pytest.mark.parametrize("version", sorted(CAPTURED_LISTINGS))
def test_a_captured_listing_reads_as_slurm_printed_it(version: str) -> None:
    """The listing as jobHistory runs it, captured (scripts/capture-golden) with --jobs of a job
    requeued once (two records), an array's own id (its three tasks) and bob's job: each job
    once, in id order, a requeued one as its last run, the array's own record asked for as
    `A_T`. 24.11 prints what 22.05 does: a capture that lacked the second run and the tasks
    was taken before slurmctld had sent them to slurmdbd (the capture now waits for them)."""
    requeued, expected = CAPTURED_LISTINGS[version]
    argv = json.loads(
        (GOLDEN / version / "history" / "window-listing-ids-times.argv.json").read_text()
    )["argv"]
    assert sacct_format(argv) == LISTING_FIELDS and sacct_boundary(argv) == ""
    text = read(version, "history", "window-listing-ids-times")
    assert [line.split("\x1f")[0] for line in text.splitlines()].count(str(requeued)) == 2
    assert parse_listing(text) == expected
    assert [job.asked for job in parse_listing(text)][:2] == [requeued, (expected[1].job_id, 3)]


def test_a_listing_asks_for_ids_and_times_alone() -> None:
    """The window's listing: job rows only (--allocations), JobIDRaw, JobID, Submit and End,
    and \\x1f alone between them (no text a user chose, so no boundary); an array's own
    record is asked for as `A_T` by a page's read."""
    argv = history_command(WINDOW, "", listing=True).argv
    assert "--allocations" in argv and sacct_format(argv) == LISTING_FIELDS
    assert f"--delimiter={delimiter('')}" in argv and delimiter("") == "\x1f"
    read = history_command(replace(WINDOW, id_list=(5, (7, 3), 9)), "", steps=True).argv
    assert "--jobs=5,7_3,9" in read


@pytest.mark.parametrize(
    "forged",
    [
        "42\x1f42\x1f1000\x1f1001\x1fextra\n",  # a column more than asked
        "42\x1f42\x1f1000\n",  # one fewer
        "42.batch\x1f42.batch\x1f1000\x1f1001\n",  # a step row (--allocations prints none)
        "x42\x1f42\x1f1000\x1f1001\n",  # not an id
        "\u0664\u0662\x1f42\x1f1000\x1f1001\n",  # digits, but not ASCII ones
        "-1\x1f-1\x1f1000\x1f1001\n",
        "42\x1f42_1 name\x1f1000\x1f1001\n",  # a JobID Slurm does not print
    ],
)
def test_a_listing_row_that_is_not_ids_and_times_is_refused(forged: str) -> None:
    """Anything in a listing but an ASCII job id and two times is a ParseError, never a job."""
    with pytest.raises(ParseError):
        parse_listing("7\x1f7\x1f900\x1f950\n" + forged)


def test_a_listing_shows_a_requeued_jobs_last_run() -> None:
    """--duplicates lists each run of a requeued job: the listing keeps the last submitted
    (what sacct without -D shows), and unset times (0, Unknown: still running) read as None."""
    text = "5\x1f5\x1f100\x1f150\n5\x1f5\x1f160\x1fUnknown\n6\x1f4_2\x1f0\x1f0\r\n"
    text += "4\x1f4_7\x1f90\x1f95\n8\x1f8_[1-3%2]\x1f80\x1fUnknown\n9\x1f9+0\x1f80\x1f81"
    assert parse_listing(text) == [
        Listed(4, 90, 95, task=7),  # the array's own record
        Listed(5, 160, None),
        Listed(6, None, None),  # a task of array 4: asked by its own id
        Listed(8, 80, None),  # a pending remainder
        Listed(9, 80, 81),  # a het job's leader
    ]
