"""Pure helpers: hostlists, Slurm durations, key=value lines, cursors, id validation."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest

from resolvers.ids import BadUserInput, validate_job_id
from resolvers.pagination import decode_cursor, encode_cursor
from resolvers.slurm.errors import (
    UNAVAILABLE,
    ParseError,
    SlurmErrorKind,
    classify,
    slurm_message,
    without_internals,
)
from resolvers.slurm.history import _clock
from resolvers.slurm.hostlist import expand_hostlist
from resolvers.slurm.jobs import (
    FIELD_SEPARATOR,
    FREE_TEXT_FIELDS,
    STRUCTURED_FIELDS,
    _format_option,
    parse_squeue,
    squeue_command,
)
from resolvers.slurm.keyvalue import parse_record
from resolvers.slurm.nodes import parse_nodes
from resolvers.slurm.values import int_or_none, minutes_or_none


@pytest.mark.parametrize(
    ("expression", "names"),
    [
        ("n[1-3]", ("n1", "n2", "n3")),
        ("n[1,3-4],gpu07", ("n1", "n3", "n4", "gpu07")),
        ("gpu[08-10]", ("gpu08", "gpu09", "gpu10")),
        ("r[1-2]-n[1-2]", ("r1-n1", "r1-n2", "r2-n1", "r2-n2")),
        ("", ()),
        ("(null)", ()),
    ],
)
def test_hostlists_expand_like_slurm(expression: str, names: tuple[str, ...]) -> None:
    """Ranges, lists, zero padding and several bracket groups expand in Slurm's order."""
    assert expand_hostlist(expression) == names


@pytest.mark.parametrize(
    ("duration", "minutes"),
    [
        ("30", 30),
        ("30:00", 30),
        ("30:01", 31),
        ("1:00:00", 60),
        ("1-2", 1560),
        ("1-2:30", 1590),
        ("2-12:00:00", 3600),
        ("UNLIMITED", None),
        ("NOT_SET", None),
        ("INVALID", None),
    ],
)
def test_durations_follow_slurms_grammar(duration: str, minutes: int | None) -> None:
    """M, M:S, H:M:S, D-H, D-H:M and D-H:M:S; seconds round up; unlimited is None."""
    assert minutes_or_none(duration) == minutes


def test_free_text_values_keep_lookalike_keys() -> None:
    """`x=y` inside a reason stays in the reason unless the key is a known one."""
    known = frozenset({"NodeName", "State", "Reason"})
    line = "NodeName=n1 State=IDLE+DRAIN Reason=fan broken x=y  now [root@1]"
    record = parse_record(line, known, frozenset({"Reason"}))
    assert record == {
        "NodeName": "n1",
        "State": "IDLE+DRAIN",
        "Reason": "fan broken x=y  now [root@1]",
    }


@pytest.mark.parametrize("good", ["42", "42_7", "42_[1-9]", "42_[1,3-5%2]", "42+1"])
def test_job_ids_in_slurms_forms_are_accepted(good: str) -> None:
    """Every display form of a job id passes validation."""
    assert validate_job_id(good) == good


@pytest.mark.parametrize("bad", ["", "42;ls", "-1", "42_", "abc", "4 2", "$(id)", "9" * 11])
def test_anything_else_is_bad_user_input(bad: str) -> None:
    """Ids that are not Slurm's forms never reach a command line."""
    with pytest.raises(BadUserInput):
        validate_job_id(bad)


def decode_prefix() -> str:
    """The text our cursors encode before the job id."""
    return base64.urlsafe_b64decode(encode_cursor(7)).decode()[:-1]


def _cursor_of(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "!!!",
        "am9iOg==",
        "Zm9vOjE=",
        # A forged cursor of our own form whose number int() refuses (past 4,300 digits) was an
        # internal error with a logged traceback, which any client could repeat at will.
        _cursor_of(decode_prefix() + "9" * 5000),
        _cursor_of(decode_prefix() + "9" * 21),
    ],
)
def test_foreign_cursors_are_bad_user_input(bad: str) -> None:
    """Only cursors this API issued are accepted."""
    with pytest.raises(BadUserInput):
        decode_cursor(bad)


# What Slurm never prints, but an impostor (or a corrupted output) could: digits of other
# scripts, which str.isdigit takes and int() refuses, and numbers longer than int() reads.
@pytest.mark.parametrize("number", ["\u00b2", "\u0664\u0662", "\uff14\uff12", "9" * 5000])
def test_parsers_refuse_numbers_slurm_does_not_print(number: str) -> None:
    """A parse error (expected, coded for clients) or an absent value, never a ValueError
    escaping a parser as an internal error."""
    assert int_or_none(number) is None
    assert minutes_or_none(number) is None
    assert minutes_or_none(f"{number}:00") is None
    boundary = "\x1e"
    structured = [number] * len(STRUCTURED_FIELDS)
    free = ["x"] * len(FREE_TEXT_FIELDS)
    row = FIELD_SEPARATOR.join(structured) + boundary + boundary.join(free)
    with pytest.raises(ParseError):
        parse_squeue(row, boundary)


NODE_LINE = (
    "NodeName=n3 CPUTot=4 RealMemory=2000 State={state} Partitions=batch "
    "Reason={reason} CfgTRES=cpu=4"
)


@pytest.mark.parametrize(
    ("state", "shown"),
    [
        ("IDLE+DRAIN", True),
        ("MIXED+DRAIN", True),
        ("DOWN*", True),
        ("DOWN+NOT_RESPONDING", True),
        ("IDLE+FAIL", True),
        # Slurm 24.11 keeps the reason of a resumed node; 22.05 clears it.
        ("IDLE", False),
        ("IDLE*", False),
        ("MIXED", False),
    ],
)
def test_a_node_reason_shows_only_while_out_of_service(state: str, shown: bool) -> None:
    """A node's reason is kept while it is drained, down or failed, and only then."""
    [node] = parse_nodes(NODE_LINE.format(state=state, reason="fan [root@1795863204]"))
    assert (node.reason, node.reason_set_by, node.reason_time) == (
        ("fan", "root", 1795863204) if shown else (None, None, None)
    )


@pytest.mark.parametrize(
    "stderr",
    [
        "slurm_load_jobs error: Unable to contact slurm controller (connect failure)",
        "slurm_load_jobs error: Connection refused",
        "slurm_load_jobs error: Connection reset by peer",  # 24.11, slurmctld stopping mid-call
        "slurm_load_jobs error: Socket timed out on send/recv operation",
    ],
)
def test_a_controller_going_away_is_unreachable_not_an_error(stderr: str) -> None:
    """Every way squeue says the controller went away is CONTROLLER_UNREACHABLE (the API's
    SLURM_UNAVAILABLE, which clients retry), not a Slurm error."""
    assert classify(stderr + "\n") is SlurmErrorKind.CONTROLLER_UNREACHABLE


@pytest.mark.parametrize(
    "stderr",
    [
        "sacct: error: slurm_persist_conn_open_without_init: failed to open persistent connection"
        " to host:localhost:7620: Connection refused",
        "sacctmgr: error: Sending PersistInit msg: Connection refused",
        "sacct: error: Problem talking to the database: Connection refused",
    ],
)
def test_slurmdbd_going_away_is_accounting_unreachable(stderr: str) -> None:
    """sacct and sacctmgr meeting a slurmdbd that is down: ACCOUNTING_UNREACHABLE (a
    SLURM_UNAVAILABLE of its own, whose message says slurmdbd), not the controller's."""
    assert classify(stderr + "\n") is SlurmErrorKind.ACCOUNTING_UNREACHABLE
    assert SlurmErrorKind.ACCOUNTING_UNREACHABLE in UNAVAILABLE


@pytest.mark.parametrize(
    ("said", "shown"),
    [
        (
            "failed to open persistent connection to host:head-1.internal:6819: Connection refused",
            "failed to open persistent connection to <host>: Connection refused",
        ),
        ("connect to 10.0.3.7:6817 failed", "connect to <address> failed"),
        ("connect to [fd00::7]:6817 failed", "connect to <address> failed"),
        ("slurmdbd at ip-10-0-3-7.ec2.internal:6819 is down", "slurmdbd at <host> is down"),
        ("unable to read /etc/slurm/slurm.conf", "unable to read <path>"),
        ('"/opt/slurm/etc/slurmdbd.conf" missing', '"<path>" missing'),
        (
            "User: arn:aws:sts::123456789012:assumed-role/HeadNode/i-0abc is not authorized",
            "User: <arn> is not authorized",
        ),
        # What is the user's own, or Slurm's vocabulary, stays.
        ("Requested time limit 1:30:00 is invalid", "Requested time limit 1:30:00 is invalid"),
        ("Access/permission denied", "Access/permission denied"),
        ("MaxRSS N/A; job 42_[1-3]", "MaxRSS N/A; job 42_[1-3]"),
        ("Invalid partition name specified", "Invalid partition name specified"),
    ],
)
def test_slurm_words_lose_hosts_ports_and_paths(said: str, shown: str) -> None:
    """The text of Slurm's that a client may read names no host, port, address, path or ARN."""
    assert without_internals(said) == shown
    assert slurm_message(f"sacct: error: {said}\n") == shown


@pytest.mark.parametrize("boundary", ["a", "0f3c9e21ab77", "Z" * 40])
def test_squeues_format_is_the_one_built_for_its_boundary(boundary: str) -> None:
    """The --Format kept with a stand-in boundary is, boundary put in, the one built for it."""
    [option] = [a for a in squeue_command(boundary, ["42"]).argv if a.startswith("--Format=")]
    assert option == _format_option(boundary)
    assert "\x00" not in option
    assert option.count(boundary) >= len(FREE_TEXT_FIELDS)


@pytest.mark.parametrize("epoch", [0, 1, 946_684_800, 1_764_000_000, 2**31, 253_402_300_799])
def test_sacct_clock_is_datetimes_text(epoch: int) -> None:
    """sacct's window reads the same clock text datetime printed, at every epoch it prints."""
    assert _clock(epoch) == datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")


def test_sacct_clock_refuses_what_datetime_refuses() -> None:
    """Past year 9999 the window fails as it did, not with a five-digit year."""
    with pytest.raises(ValueError, match="out of range"):
        _clock(253_402_300_800)
