"""Parsers against output captured from real Slurm (scripts/capture-golden), per Slurm version.

Every case is parsed as captured, with CRLF line ends, and without its final newline; all three
must agree. Where Slurm's own JSON was captured at the same moment, the parse must agree with it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from resolvers.output import output_file
from resolvers.slurm.errors import SlurmError, SlurmErrorKind, check
from resolvers.slurm.history import parse_history
from resolvers.slurm.history_listing import parse_listing
from resolvers.slurm.job_details import parse_job_details
from resolvers.slurm.jobs import parse_squeue
from resolvers.slurm.nodes import parse_nodes, split_gres
from resolvers.slurm.partitions import parse_partitions
from resolvers.slurm.sacct import parse_sacct
from resolvers.slurm.sacctmgr import parse_accounts, parse_associations, parse_qos, parse_sshare
from resolvers.slurm.version import parse_version
from resolvers.stats import gres_count
from tests.support import oracle
from tests.support.sacct import sacct_boundary, sacct_format
from transport.base import CommandResult, decode_output

GOLDEN = Path(__file__).resolve().parent.parent / "golden"


@dataclass(frozen=True)
class Case:
    folder: Path
    name: str

    @property
    def id(self) -> str:
        return f"{self.folder.parent.name}/{self.folder.name}/{self.name}"

    def read(self, suffix: str) -> bytes:
        return (self.folder / f"{self.name}.{suffix}").read_bytes()

    def result(self) -> CommandResult:
        argv = json.loads(self.read("argv.json"))["argv"]
        return CommandResult(
            tuple(argv),
            decode_output(self.read("stdout")),
            decode_output(self.read("stderr")),
            int(self.read("exit")),
        )

    def boundary(self) -> str:
        argv = json.loads(self.read("argv.json"))["argv"]
        spec: str = next(a for a in argv if a.startswith("--Format="))
        return spec.rsplit("\x1e", 1)[1]

    def sacct_boundary(self) -> str:
        """The boundary of sacct's delimiter in the captured argv (none in older captures)."""
        return sacct_boundary(json.loads(self.read("argv.json"))["argv"])

    def sacct_format(self) -> tuple[str, ...]:
        return sacct_format(json.loads(self.read("argv.json"))["argv"])


def cases() -> list[Case]:
    found = []
    for argv_file in sorted(GOLDEN.glob("*/*/*.argv.json")):
        name = argv_file.name.removesuffix(".argv.json")
        if not name.endswith("-json"):
            found.append(Case(argv_file.parent, name))
    return found


def variants(text: str) -> list[str]:
    """The text as captured, with CRLF line ends, and without its final newline."""
    return [text, text.replace("\n", "\r\n"), text.rstrip("\n")]


def parser_for(case: Case) -> Callable[[str], Any]:
    command = case.folder.name
    if command in ("squeue", "output-files"):
        boundary = case.boundary()
        return lambda text: [row.fields() for row in parse_squeue(text, boundary)]
    if command == "sacctmgr":  # one folder, three entities: the case names which
        return {"qos": parse_qos, "accounts": parse_accounts}.get(case.name, parse_associations)
    if command == "history":
        history_boundary, fields = case.sacct_boundary(), case.sacct_format()
        if "JobName" not in fields:  # a window's listing: rows to choose a page, not records
            return lambda text: parse_listing(text, history_boundary, fields)
        return lambda text: parse_history(text, history_boundary, fields)
    if command == "sacct":
        sacct_boundary = case.sacct_boundary()
        return lambda text: parse_sacct(text, sacct_boundary)
    return {
        "sshare": parse_sshare,
        "job-details": parse_job_details,
        "nodes": parse_nodes,
        "node-reasons": parse_nodes,
        "partitions": parse_partitions,
        "version": parse_version,
    }[command]


def test_golden_files_exist_for_this_slurm_line() -> None:
    """At least one Slurm version's captures are in the tree."""
    assert cases(), "no golden files: run `make golden` with the local cluster up"


@pytest.mark.parametrize("case", cases(), ids=lambda c: c.id)
def test_golden_case(case: Case) -> None:
    """Success cases parse identically in all variants; failures classify as recorded."""
    result = case.result()
    kind_file = case.folder / f"{case.name}.kind"
    if kind_file.exists():
        with pytest.raises(SlurmError) as raised:
            check(result)
        assert raised.value.kind is SlurmErrorKind[kind_file.read_text().strip()]
        assert raised.value.message
        return
    parse = parser_for(case)
    parsed = [parse(text) for text in variants(check(result).stdout)]
    assert parsed[0] == parsed[1] == parsed[2]
    oracle_file = case.folder / "scenario-json.stdout"
    if case.folder.name in COMPARE and oracle_file.exists():
        slurm = json.loads(decode_output(oracle_file.read_bytes()))
        complete = case.folder.name != "job-details" and case.name == "scenario"
        COMPARE[case.folder.name](parsed[0], slurm, complete)


def named_cases(pattern: str, name: str) -> list[Case]:
    return [Case(path.parent, name) for path in sorted(GOLDEN.glob(pattern))]


@pytest.mark.parametrize(
    "case", named_cases("*/output-files/patterns.files", "patterns"), ids=lambda c: c.id
)
def test_patterns_resolve_to_the_files_slurmstepd_wrote(case: Case) -> None:
    """Per version, squeue's STDOUT/STDERR columns resolve to exactly the files the jobs wrote
    (`patterns.files`), and a job without a batch script (salloc) to none."""
    rows = [row.fields() for row in parse_squeue(case.result().stdout, case.boundary())]
    version = case.folder.parent.name
    paths = {output_file(row, stderr, version) for row in rows for stderr in (False, True)}
    [work_dir] = {row.work_dir for row in rows}
    written = {f"{work_dir}/{name}" for name in case.read("files").decode().splitlines()}
    assert paths == written | {None}
    patterns = {row.stdout_pattern for row in rows if row.array_task_id is not None}
    assert f"{work_dir}/slurm-%A_%a.out" in patterns  # 22.05 printed slurm-<task's id>.out


@pytest.mark.parametrize(
    "case", named_cases("*/node-reasons/resumed.argv.json", "resumed"), ids=lambda c: c.id
)
def test_a_resumed_node_shows_no_reason(case: Case) -> None:
    """Right after `state=resume`, 24.11 still prints the drain's reason (22.05 does not); the
    API shows none on either."""
    [node] = [node for node in parse_nodes(case.result().stdout) if node.name == "n3"]
    assert "DRAIN" not in node.state_flags
    assert (node.reason, node.reason_set_by, node.reason_time) == (None, None, None)


def compare_jobs(jobs: list[Any], slurm: dict[str, Any], complete: bool) -> None:
    """squeue rows and scontrol details against the JSON; `complete`: the same set of jobs."""
    theirs = {job["job_id"]: job for job in slurm["jobs"]}
    ours = {job.job_id for job in jobs}
    assert ours <= set(theirs)
    if complete:
        assert ours == set(theirs)
    for job in jobs:
        expected = theirs[job.job_id]
        assert job.name == expected["name"]
        assert job.user == expected["user_name"]
        assert job.state == oracle.first_state(expected["job_state"])
        assert (job.exit_code, job.signal) == oracle.exit_code(expected["exit_code"])
        assert job.time_limit_minutes == oracle.number(expected["time_limit"])
        assert job.submit_time == oracle.number(expected["submit_time"])
        assert (job.comment or "") == expected["comment"]
        assert job.work_dir == expected["current_working_directory"]
        if expected["cpus"] is not None:  # null in Slurm's JSON for some jobs that never ran
            assert job.num_cpus == oracle.number(expected["cpus"])


def compare_nodes(nodes: list[Any], slurm: dict[str, Any], complete: bool) -> None:
    theirs = {node["name"]: node for node in slurm["nodes"]}
    assert {node.name for node in nodes} == set(theirs)
    for node in nodes:
        expected = theirs[node.name]
        assert node.cpus == oracle.number(expected["cpus"])
        assert node.real_memory_mb == oracle.number(expected["real_memory"])
        assert list(node.features) == oracle.as_list(expected["features"])
        assert (node.reason or "") == expected["reason"]
        assert list(node.partitions) == list(expected["partitions"])
        # GPUs: the JSON's gres and gres_used against scontrol's Gres and (--details) GresUsed.
        assert gres_count(node.gres) == gres_count(split_gres(expected["gres"] or "(null)"))
        used = gres_count(split_gres(expected["gres_used"] or "(null)"))
        assert gres_count(node.gres_used) == used
        assert set(node.state_flags) == set(expected.get("state_flags") or ()) | (
            set(oracle.as_list(expected["state"])[1:])
            if isinstance(expected["state"], list)
            else set()
        )


COMPARE: dict[str, Callable[[list[Any], dict[str, Any], bool], None]] = {
    "job-details": compare_jobs,
    "squeue": compare_jobs,
    "nodes": compare_nodes,
}
