"""A job submission: its options validated, and the sbatch argv made from them. Pure.

Values shared with job updates (names, comments, dependencies) are checked in job_fields; this
module adds what only sbatch takes: resources, array specs, paths, the environment, the script
and an allow-list of extra options.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from resolvers.slurm.job_fields import (
    MAX_MINUTES,
    Dependency,
    InvalidSubmission,
    comment_value,
    comment_with_key,
    count_value,
    dependency_option,
    job_name,
    matching,
    path_value,
    slurm_names,
    text_value,
    validate_key,
)

_ARRAY_RANGE = r"\d{1,7}(?:-\d{1,7}(?::\d{1,7})?)?"
_ARRAY = re.compile(rf"^{_ARRAY_RANGE}(?:,{_ARRAY_RANGE})*(?:%\d{{1,7}})?\Z", re.ASCII)
_GRES = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_:,.=/-]{0,255}\Z")
_CONSTRAINT = re.compile(r"^[A-Za-z0-9_&|\[\]()*:,.!-]{1,256}\Z")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}\Z")
# Variables that change how sbatch or the dynamic loader behave: a client sets job variables,
# not the submission tool's configuration.
_RESERVED_ENV = re.compile(r"^(?:SLURM_|SBATCH_|SALLOC_|SRUN_|SPANK_|LD_|MALLOC_)|^PATH\Z")


@dataclass(frozen=True)
class SubmitRequest:
    """What a client asked to submit: the batch script's text (stdin of sbatch), or the S3
    object the head node fetches it from."""

    script: str | None = None
    script_s3_uri: str | None = None
    name: str | None = None
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    reservation: str | None = None
    time_limit_minutes: int | None = None
    nodes: int | None = None
    ntasks: int | None = None
    cpus_per_task: int | None = None
    memory_mb: int | None = None
    memory_per_cpu_mb: int | None = None
    gres: str | None = None
    constraint: str | None = None
    array: str | None = None
    dependencies: tuple[Dependency, ...] = ()
    any_dependency: bool = False
    work_dir: str | None = None
    stdout_path: str | None = None
    stderr_path: str | None = None
    environment: tuple[tuple[str, str], ...] = ()
    export_env: bool = False
    hold: bool = False
    begin_in_seconds: float | None = None
    comment: str | None = None
    exclusive: bool = False
    client_mutation_id: str | None = None
    extra_options: tuple[tuple[str, str | None], ...] = field(default=())


# sbatch long options a client may add, with the values each accepts (None: a flag, no value).
_EXTRA_OPTIONS: Mapping[str, re.Pattern[str] | None] = {
    name: (re.compile(pattern) if pattern is not None else None)
    for name, pattern in {
        "mail-type": r"^(?:NONE|BEGIN|END|FAIL|REQUEUE|ALL|INVALID_DEPEND|STAGE_OUT|TIME_LIMIT"
        r"(?:_[589]0)?|ARRAY_TASKS)(?:,(?:NONE|BEGIN|END|FAIL|REQUEUE|ALL|INVALID_DEPEND|"
        r"STAGE_OUT|TIME_LIMIT(?:_[589]0)?|ARRAY_TASKS))*$",
        "mail-user": r"^[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,253}$",
        "nice": r"^-?\d{1,7}$",
        "open-mode": r"^(?:append|truncate)$",
        "requeue": None,
        "no-requeue": None,
        "signal": r"^(?:[BR]:)?(?:[A-Z0-9]{1,10})(?:@\d{1,6})?$",
        "time-min": r"^\d{1,9}$",
        "ntasks-per-node": r"^\d{1,6}$",
        "gpus": r"^(?:[A-Za-z0-9_]{1,64}:)?\d{1,6}$",
        "gpus-per-node": r"^(?:[A-Za-z0-9_]{1,64}:)?\d{1,6}$",
        "gpus-per-task": r"^(?:[A-Za-z0-9_]{1,64}:)?\d{1,6}$",
        "cpus-per-gpu": r"^\d{1,6}$",
        "mem-per-gpu": r"^\d{1,9}[KMGT]?$",
        "licenses": r"^[A-Za-z0-9_]{1,64}(?::\d{1,6})?(?:[,|][A-Za-z0-9_]{1,64}(?::\d{1,6})?)*$",
        "tmp": r"^\d{1,12}[KMGT]?$",
        "threads-per-core": r"^\d{1,3}$",
        "kill-on-invalid-dep": r"^(?:yes|no)$",
        "nodelist": r"^[A-Za-z0-9_\[\],.-]{1,1024}$",
        "exclude": r"^[A-Za-z0-9_\[\],.-]{1,1024}$",
        "distribution": r"^[A-Za-z*,:]{1,64}$",
        "oversubscribe": None,
        "contiguous": None,
        "wckey": r"^[A-Za-z0-9_.-]{1,64}$",
    }.items()
}
ALLOWED_EXTRA_OPTIONS = tuple(sorted(_EXTRA_OPTIONS))


_S3_URI = re.compile(r"^s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/(.+)\Z", re.DOTALL)


def validate_s3_uri(value: str) -> str:
    match = _S3_URI.match(value)
    if match is None or len(match.group(2)) > 1024:
        raise InvalidSubmission("scriptS3Uri", f"{value[:80]!r} is not s3://bucket/key")
    path_value("scriptS3Uri", value)
    return value


def _validate_script(script: str) -> None:
    text_value("script", script, 4 * 1024 * 1024)
    if not script.startswith("#!"):
        raise InvalidSubmission("script", "must start with an interpreter line such as #!/bin/sh")
    if "\r\n" in script:
        # sbatch refuses these itself; saying so here names the field and saves a round trip.
        raise InvalidSubmission("script", "has DOS line breaks (\\r\\n); use \\n")


def sbatch_arguments(request: SubmitRequest) -> tuple[list[str], list[str]]:
    """(environment assignments for the job, sbatch options) for `request`, validated.

    Options come in a fixed order, one group per kind of request field, so the same request
    always makes the same command line (tests and the audit log compare them)."""
    _check_script_source(request)
    options = [
        "--parsable",
        *_placement_options(request),
        *_resource_options(request),
        *_file_options(request),
    ]
    environment = _environment(request.environment)
    options += [
        _export_option(request.export_env, [a.partition("=")[0] for a in environment]),
        *_timing_options(request),
        *_comment_options(request),
        *_extra_options(request.extra_options),
    ]
    return environment, options


def _check_script_source(request: SubmitRequest) -> None:
    if (request.script is None) == (request.script_s3_uri is None):
        raise InvalidSubmission("script", "give either script or scriptS3Uri")
    if request.script is not None:
        _validate_script(request.script)
    else:
        assert request.script_s3_uri is not None
        validate_s3_uri(request.script_s3_uri)


def _placement_options(request: SubmitRequest) -> list[str]:
    """Name, where the job may run, and for how long."""
    options = [] if request.name is None else ["--job-name=" + job_name(request.name)]
    options += slurm_names(
        ("--partition", "partition", request.partition),
        ("--account", "account", request.account),
        ("--qos", "qos", request.qos),
        ("--reservation", "reservation", request.reservation),
    )
    if request.time_limit_minutes is not None:
        minutes = count_value("timeLimitMinutes", request.time_limit_minutes, MAX_MINUTES)
        options.append(f"--time={minutes}")
    return options


def _resource_options(request: SubmitRequest) -> list[str]:
    """What the job asks for: counts, memory, GRES, features, an array, its dependencies."""
    options = [
        f"{option}={count_value(field_name, number)}"
        for option, field_name, number in (
            ("--nodes", "nodes", request.nodes),
            ("--ntasks", "ntasks", request.ntasks),
            ("--cpus-per-task", "cpusPerTask", request.cpus_per_task),
        )
        if number is not None
    ]
    if request.memory_mb is not None and request.memory_per_cpu_mb is not None:
        raise InvalidSubmission("memoryMb", "give memoryMb or memoryPerCpuMb, not both")
    if request.memory_mb is not None:
        options.append(f"--mem={count_value('memoryMb', request.memory_mb, 2**40)}M")
    if request.memory_per_cpu_mb is not None:
        options.append(f"--mem-per-cpu={count_value('memoryPerCpuMb', request.memory_per_cpu_mb)}M")
    if request.gres is not None:
        options.append("--gres=" + matching("gres", request.gres, _GRES, "a GRES spec"))
    if request.constraint is not None:
        value = matching("constraint", request.constraint, _CONSTRAINT, "a feature expression")
        options.append("--constraint=" + value)
    if request.array is not None:
        value = matching("array", request.array, _ARRAY, "an array spec such as 0-9%2 or 1,3,5")
        options.append("--array=" + value)
    if request.dependencies:
        value = dependency_option(request.dependencies, request.any_dependency)
        options.append("--dependency=" + value)
    return options


def _file_options(request: SubmitRequest) -> list[str]:
    """The working directory and the output files."""
    if request.work_dir is not None and not request.work_dir.startswith("/"):
        # sbatch would resolve it against the submission directory: say what is meant instead.
        raise InvalidSubmission("workDir", "must be an absolute path")
    return [
        f"{option}={path_value(field_name, path)}"
        for option, field_name, path in (
            ("--chdir", "workDir", request.work_dir),
            ("--output", "stdoutPath", request.stdout_path),
            ("--error", "stderrPath", request.stderr_path),
        )
        if path is not None
    ]


def _export_option(export_env: bool, names: list[str]) -> str:
    if export_env:
        return "--export=" + ",".join(["ALL", *names])
    # Only the listed variables (and SLURM_*); Slurm then loads the user's login environment.
    return "--export=" + (",".join(names) if names else "NONE")


def _timing_options(request: SubmitRequest) -> list[str]:
    """Held, not before a moment, alone on its nodes."""
    options = ["--hold"] if request.hold else []
    if request.begin_in_seconds is not None:
        options.append(f"--begin=now+{max(0, math.ceil(request.begin_in_seconds))}")
    if request.exclusive:
        options.append("--exclusive")
    return options


def _comment_options(request: SubmitRequest) -> list[str]:
    """The comment, which also carries the idempotency key (resolvers/slurm/values.py)."""
    key = None if request.client_mutation_id is None else validate_key(request.client_mutation_id)
    comment = request.comment if request.comment is None else comment_value(request.comment)
    stored = comment_with_key(comment, key)
    return [] if stored is None else ["--comment=" + stored]


def _environment(variables: Sequence[tuple[str, str]]) -> list[str]:
    assignments = []
    seen: set[str] = set()
    for index, (name, value) in enumerate(variables):
        where = f"environment[{index}]"
        matching(where, name, _ENV_NAME, "a variable name")
        if _RESERVED_ENV.match(name):
            raise InvalidSubmission(where, f"{name} configures Slurm or the loader; not allowed")
        if name in seen:
            raise InvalidSubmission(where, f"{name} is given twice")
        seen.add(name)
        assignments.append(f"{name}={text_value(where, value, 128 * 1024)}")
    return assignments


def _extra_options(extra: Sequence[tuple[str, str | None]]) -> list[str]:
    options = []
    for index, (name, value) in enumerate(extra):
        where = f"extraOptions[{index}]"
        if name not in _EXTRA_OPTIONS:
            raise InvalidSubmission(
                where, f"{name[:40]!r} is not allowed; allowed: {', '.join(ALLOWED_EXTRA_OPTIONS)}"
            )
        pattern = _EXTRA_OPTIONS[name]
        if pattern is None:
            if value is not None:
                raise InvalidSubmission(where, f"--{name} takes no value")
            options.append(f"--{name}")
        else:
            if value is None:
                raise InvalidSubmission(where, f"--{name} needs a value")
            options.append(f"--{name}={matching(where, value, pattern, f'a valid --{name}')}")
    return options
