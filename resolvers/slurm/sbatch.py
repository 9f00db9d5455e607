"""A job submission: its options validated, and the sbatch argv made from them. Pure.

Every value a client sends ends up as one argv element (`--job-name=<value>`), never in a shell,
so it cannot run anything. Validation is still strict where Slurm has a grammar (partition names,
array specs, dependencies, resources), so that a mistake is reported by field, before a round
trip, and free text (names, comments, paths, environment values) is refused only for bytes Slurm
cannot store (NUL) or that would break a path (control characters).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from resolvers.ids import validate_job_id


class InvalidSubmission(ValueError):
    """One option is wrong; `field` names it as the client wrote it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


# The idempotency key is stored in the job's comment, behind this marker, so that it lives with
# the job in Slurm and survives a server restart.
KEY_MARKER = "slurm-graphql:cmid="
KEY_END = ";"
_KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SLURM_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}$")
_ARRAY_RANGE = r"\d{1,7}(?:-\d{1,7}(?::\d{1,7})?)?"
_ARRAY = re.compile(rf"^{_ARRAY_RANGE}(?:,{_ARRAY_RANGE})*(?:%\d{{1,7}})?$")
_GRES = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_:,.=/-]{0,255}$")
_CONSTRAINT = re.compile(r"^[A-Za-z0-9_&|\[\]()*:,.!-]{1,256}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
# Variables that change how sbatch or the dynamic loader behave: a client sets job variables,
# not the submission tool's configuration.
_RESERVED_ENV = re.compile(r"^(?:SLURM_|SBATCH_|SALLOC_|SRUN_|SPANK_|LD_|MALLOC_)|^PATH$")
_MAX_TEXT = 1024
_MAX_PATH = 4096
_MAX_COUNT = 1_000_000
_MAX_MINUTES = 366 * 24 * 60

DEPENDENCY_TYPES = (
    "after",
    "afterany",
    "afterok",
    "afternotok",
    "aftercorr",
    "afterburstbuffer",
    "singleton",
)


@dataclass(frozen=True)
class Dependency:
    type: str  # one of DEPENDENCY_TYPES
    job_ids: tuple[str, ...] = ()


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


def _text(field: str, value: str, limit: int = _MAX_TEXT) -> str:
    if "\x00" in value:
        raise InvalidSubmission(field, "must not contain NUL bytes")
    if len(value) > limit:
        raise InvalidSubmission(field, f"is longer than {limit} characters")
    return value


def _path(field: str, value: str) -> str:
    _text(field, value, _MAX_PATH)
    if not value or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise InvalidSubmission(field, "must be a non-empty path without control characters")
    return value


def _matching(field: str, value: str, pattern: re.Pattern[str], what: str) -> str:
    if not pattern.match(value):
        raise InvalidSubmission(field, f"{value[:60]!r} is not {what}")
    return value


def _count(field: str, value: int, maximum: int = _MAX_COUNT) -> int:
    if not 1 <= value <= maximum:
        raise InvalidSubmission(field, f"must be between 1 and {maximum}, got {value}")
    return value


def validate_key(value: str) -> str:
    return _matching("clientMutationId", value, _KEY, "1-64 letters, digits, '_' or '-'")


def comment_with_key(comment: str | None, key: str | None) -> str | None:
    if key is None:
        return comment
    return f"{KEY_MARKER}{key}{KEY_END}{comment or ''}"


def split_comment(stored: str | None) -> tuple[str | None, str | None]:
    """(the client's comment, the idempotency key) from the comment Slurm stores."""
    if stored is None or not stored.startswith(KEY_MARKER):
        return stored, None
    key, sep, comment = stored[len(KEY_MARKER) :].partition(KEY_END)
    if not sep or not _KEY.match(key):
        return stored, None
    return comment or None, key


_S3_URI = re.compile(r"^s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/(.+)$", re.DOTALL)


def validate_s3_uri(value: str) -> str:
    match = _S3_URI.match(value)
    if match is None or len(match.group(2)) > 1024:
        raise InvalidSubmission("scriptS3Uri", f"{value[:80]!r} is not s3://bucket/key")
    _path("scriptS3Uri", value)
    return value


def _validate_script(script: str) -> None:
    _text("script", script, 4 * 1024 * 1024)
    if not script.startswith("#!"):
        raise InvalidSubmission("script", "must start with an interpreter line such as #!/bin/sh")
    if "\r\n" in script:
        # sbatch refuses these itself; saying so here names the field and saves a round trip.
        raise InvalidSubmission("script", "has DOS line breaks (\\r\\n); use \\n")


def dependency_option(dependencies: Sequence[Dependency], any_of: bool) -> str:
    parts = []
    for index, dependency in enumerate(dependencies):
        where = f"dependencies[{index}]"
        if dependency.type not in DEPENDENCY_TYPES:
            raise InvalidSubmission(where, f"unknown dependency type {dependency.type!r}")
        if dependency.type == "singleton":
            if dependency.job_ids:
                raise InvalidSubmission(where, "singleton takes no job ids")
            parts.append("singleton")
            continue
        if not dependency.job_ids:
            raise InvalidSubmission(where, "needs at least one job id")
        for job_id in dependency.job_ids:
            if "+" in job_id or "[" in job_id:
                raise InvalidSubmission(where, f"{job_id!r} is not a job or array task id")
            try:
                validate_job_id(job_id)
            except ValueError:
                raise InvalidSubmission(where, f"{job_id[:40]!r} is not a job id") from None
        parts.append(":".join((dependency.type, *dependency.job_ids)))
    return ("?" if any_of else ",").join(parts)


def sbatch_arguments(request: SubmitRequest) -> tuple[list[str], list[str]]:
    """(environment assignments for the job, sbatch options) for `request`, validated."""
    if (request.script is None) == (request.script_s3_uri is None):
        raise InvalidSubmission("script", "give either script or scriptS3Uri")
    if request.script is not None:
        _validate_script(request.script)
    else:
        assert request.script_s3_uri is not None
        validate_s3_uri(request.script_s3_uri)
    options = ["--parsable"]
    if request.name is not None:
        if not request.name:
            raise InvalidSubmission("name", "must not be empty")
        options.append("--job-name=" + _text("name", request.name))
    for option, field_name, value in (
        ("--partition", "partition", request.partition),
        ("--account", "account", request.account),
        ("--qos", "qos", request.qos),
        ("--reservation", "reservation", request.reservation),
    ):
        if value is not None:
            options.append(f"{option}={_matching(field_name, value, _SLURM_NAME, 'a name')}")
    if request.time_limit_minutes is not None:
        minutes = _count("timeLimitMinutes", request.time_limit_minutes, _MAX_MINUTES)
        options.append(f"--time={minutes}")
    for option, field_name, number in (
        ("--nodes", "nodes", request.nodes),
        ("--ntasks", "ntasks", request.ntasks),
        ("--cpus-per-task", "cpusPerTask", request.cpus_per_task),
    ):
        if number is not None:
            options.append(f"{option}={_count(field_name, number)}")
    if request.memory_mb is not None and request.memory_per_cpu_mb is not None:
        raise InvalidSubmission("memoryMb", "give memoryMb or memoryPerCpuMb, not both")
    if request.memory_mb is not None:
        options.append(f"--mem={_count('memoryMb', request.memory_mb, 2**40)}M")
    if request.memory_per_cpu_mb is not None:
        options.append(f"--mem-per-cpu={_count('memoryPerCpuMb', request.memory_per_cpu_mb)}M")
    if request.gres is not None:
        options.append("--gres=" + _matching("gres", request.gres, _GRES, "a GRES spec"))
    if request.constraint is not None:
        value = _matching("constraint", request.constraint, _CONSTRAINT, "a feature expression")
        options.append("--constraint=" + value)
    if request.array is not None:
        value = _matching("array", request.array, _ARRAY, "an array spec such as 0-9%2 or 1,3,5")
        options.append("--array=" + value)
    if request.dependencies:
        value = dependency_option(request.dependencies, request.any_dependency)
        options.append("--dependency=" + value)
    if request.work_dir is not None and not request.work_dir.startswith("/"):
        # sbatch would resolve it against the submission directory: say what is meant instead.
        raise InvalidSubmission("workDir", "must be an absolute path")
    for option, field_name, path in (
        ("--chdir", "workDir", request.work_dir),
        ("--output", "stdoutPath", request.stdout_path),
        ("--error", "stderrPath", request.stderr_path),
    ):
        if path is not None:
            options.append(f"{option}={_path(field_name, path)}")
    environment = _environment(request.environment)
    names = [assignment.partition("=")[0] for assignment in environment]
    if request.export_env:
        options.append("--export=" + ",".join(["ALL", *names]))
    else:
        # Only the listed variables (and SLURM_*); Slurm then loads the user's login environment.
        options.append("--export=" + (",".join(names) if names else "NONE"))
    if request.hold:
        options.append("--hold")
    if request.begin_in_seconds is not None:
        seconds = max(0, math.ceil(request.begin_in_seconds))
        options.append(f"--begin=now+{seconds}")
    if request.exclusive:
        options.append("--exclusive")
    key = None if request.client_mutation_id is None else validate_key(request.client_mutation_id)
    comment = request.comment if request.comment is None else _text("comment", request.comment)
    stored = comment_with_key(comment, key)
    if stored is not None:
        options.append("--comment=" + stored)
    options.extend(_extra_options(request.extra_options))
    return environment, options


def _environment(variables: Sequence[tuple[str, str]]) -> list[str]:
    assignments = []
    seen: set[str] = set()
    for index, (name, value) in enumerate(variables):
        where = f"environment[{index}]"
        _matching(where, name, _ENV_NAME, "a variable name")
        if _RESERVED_ENV.match(name):
            raise InvalidSubmission(where, f"{name} configures Slurm or the loader; not allowed")
        if name in seen:
            raise InvalidSubmission(where, f"{name} is given twice")
        seen.add(name)
        assignments.append(f"{name}={_text(where, value, 128 * 1024)}")
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
            options.append(f"--{name}={_matching(where, value, pattern, f'a valid --{name}')}")
    return options


@dataclass(frozen=True)
class JobUpdate:
    """Changes to a job, for `scontrol update`; None leaves a field as it is."""

    time_limit_minutes: int | None = None
    name: str | None = None
    comment: str | None = None
    partition: str | None = None
    qos: str | None = None
    account: str | None = None
    reservation: str | None = None
    nice: int | None = None
    dependencies: tuple[Dependency, ...] | None = None
    any_dependency: bool = False


def update_arguments(update: JobUpdate) -> list[str]:
    """`scontrol update` fields (`Key=value`, one argv element each) for `update`, validated."""
    fields = []
    if update.time_limit_minutes is not None:
        minutes = _count("timeLimitMinutes", update.time_limit_minutes, _MAX_MINUTES)
        fields.append(f"TimeLimit={minutes}")
    if update.name is not None:
        if not update.name:
            raise InvalidSubmission("name", "must not be empty")
        fields.append("Name=" + _text("name", update.name))
    if update.comment is not None:
        fields.append("Comment=" + _text("comment", update.comment))
    for key, field_name, value in (
        ("Partition", "partition", update.partition),
        ("QOS", "qos", update.qos),
        ("Account", "account", update.account),
        ("Reservation", "reservation", update.reservation),
    ):
        if value is not None:
            fields.append(f"{key}={_matching(field_name, value, _SLURM_NAME, 'a name')}")
    if update.nice is not None:
        if not -2_147_483_645 <= update.nice <= 2_147_483_645:
            raise InvalidSubmission("nice", "is out of range")
        fields.append(f"Nice={update.nice}")
    if update.dependencies is not None:
        value = dependency_option(update.dependencies, update.any_dependency)
        fields.append(f"Dependency={value}")
    if not fields:
        raise InvalidSubmission("input", "names nothing to change")
    return fields


_SIGNAL = re.compile(r"^(?:SIG)?[A-Z][A-Z0-9+]{0,15}$|^\d{1,2}$")


def validate_signal(value: str) -> str:
    return _matching("signal", value, _SIGNAL, "a signal name or number such as TERM or 15")
