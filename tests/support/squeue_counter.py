"""Counting the squeue runs of server processes where they happen: a `squeue` first on their PATH
(commands inherit PATH: transport/environment.py) that notes who started it and when, then runs
Slurm's own. Nothing in the server is asked or trusted for the count."""

from __future__ import annotations

import os
import shlex
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SqueueRun:
    parent: int  # the PID of the process that ran it: the server process
    at: float  # time.time() when it started


class SqueueCounter:
    """A directory holding the wrapper and its log; `path_environ()` puts it first on PATH.
    `command` names what it counts (squeue by default; sacct, say); `delay` seconds, when
    given, each run sleeps after its line is noted (a slow head node: a fetch a test can catch
    under way)."""

    def __init__(self, command: str = "squeue", delay: float = 0.0) -> None:
        real = shutil.which(command)
        if real is None:
            raise RuntimeError(f"{command} is missing")
        # Outside pytest's 0700 tmp tree: a command run as alice must reach the wrapper too.
        self.directory = Path(tempfile.mkdtemp(prefix="slurm-graphql-squeue-"))
        self.directory.chmod(0o755)
        self.log = self.directory / "runs.log"
        self.log.touch()
        self.log.chmod(0o666)
        wrapper = self.directory / command
        # One short line per run, appended (O_APPEND: concurrent runs do not interleave).
        wrapper.write_text(
            "#!/bin/sh\n"
            f'printf "%s %s\\n" "$PPID" "$(date +%s.%N)" >> {shlex.quote(str(self.log))}\n'
            + (f"sleep {delay:.3f}\n" if delay > 0 else "")
            + f'exec {shlex.quote(real)} "$@"\n'
        )
        wrapper.chmod(0o755)

    def path_environ(self) -> dict[str, str]:
        return {"PATH": f"{self.directory}:{os.environ.get('PATH', '/usr/bin:/bin')}"}

    def runs(self, since: float = 0.0) -> list[SqueueRun]:
        found = []
        for line in self.log.read_text().splitlines():
            parent, _, at = line.partition(" ")
            if parent.isdigit() and float(at) >= since:
                found.append(SqueueRun(int(parent), float(at)))
        return found

    def close(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
