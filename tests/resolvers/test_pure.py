"""Pure helpers: hostlists, Slurm durations, key=value lines, cursors, id validation."""

from __future__ import annotations

import pytest

from resolvers.ids import BadUserInput, validate_job_id
from resolvers.pagination import decode_cursor
from resolvers.slurm.errors import SlurmErrorKind, classify
from resolvers.slurm.hostlist import expand_hostlist
from resolvers.slurm.keyvalue import parse_record
from resolvers.slurm.nodes import parse_nodes
from resolvers.slurm.values import minutes_or_none


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


@pytest.mark.parametrize("bad", ["", "!!!", "am9iOg==", "Zm9vOjE="])
def test_foreign_cursors_are_bad_user_input(bad: str) -> None:
    """Only cursors this API issued are accepted."""
    with pytest.raises(BadUserInput):
        decode_cursor(bad)


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
