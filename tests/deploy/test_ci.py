"""The CI contract: `.ci/run` proves both supported platforms (Debian 12 here, Debian 13 in the
chroot of scripts/debian13), and `make check` lints every shell script."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CI_RUN = REPO / ".ci" / "run"
DEBIAN13 = REPO / "scripts" / "debian13"


def commands(path: Path) -> list[str]:
    """The script's lines without comments and blank lines."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def index_of(lines: list[str], pattern: str) -> int:
    found = [i for i, line in enumerate(lines) if re.search(pattern, line)]
    assert found, f"no line of .ci/run matches {pattern!r}"
    return found[0]


def shell_scripts() -> set[str]:
    """Every file of scripts/ and .ci/ that starts with a shell's #! line."""
    found = set()
    for path in [*sorted((REPO / "scripts").iterdir()), CI_RUN]:
        first = path.read_text(errors="replace").split("\n", 1)[0]
        if re.match(r"#!.*\b(ba)?sh\b", first):
            found.add(str(path.relative_to(REPO)))
    return found


def test_ci_runs_the_suite_on_debian_12_and_in_the_debian_13_chroot_at_once() -> None:
    """.ci/run starts, in the background, the chroot build and then the same suite in the
    chroot; runs `make test` here meanwhile; then waits for the chroot's run."""
    lines = commands(CI_RUN)
    function = index_of(lines, r"^debian13\(\) \{$")
    build = index_of(lines, r"^if ! (nice .*)?scripts/debian13 build\b")
    chroot = index_of(lines, r"\bscripts/debian13 test\b")
    started = index_of(lines, r"^debian13 &$")
    host = index_of(lines, r"^make test\b")
    wait = index_of(lines, r"^wait \"\$chroot_run\"")
    assert function < build < chroot < started < host < wait


def test_the_chroot_keeps_its_tool_caches_apart() -> None:
    """Both suites run at once in one repository: the chroot's mypy, ruff and pytest caches
    must not be the host's."""
    text = DEBIAN13.read_text()
    assert "MYPY_CACHE_DIR=.debian13/" in text and "RUFF_CACHE_DIR=.debian13/" in text
    assert "-p no:cacheprovider" in text


def test_make_has_a_debian13_target() -> None:
    """`make test-debian13` runs the chroot suite."""
    dry = subprocess.run(
        ["make", "-n", "--no-print-directory", "test-debian13"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    assert dry.stdout.split() == ["scripts/debian13", "test"]


def test_make_check_runs_shellcheck_on_every_shell_script() -> None:
    """The shellcheck line of `make check` names every shell script of the repository."""
    venv = Path(sys.executable).parent.parent
    dry = subprocess.run(
        ["make", "-n", "--no-print-directory", "check", f"VENV={venv}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    [line] = [line for line in dry.stdout.splitlines() if line.startswith("shellcheck ")]
    assert set(line.split()[1:]) == shell_scripts()


def test_the_shell_scripts_pass_shellcheck() -> None:
    """No shellcheck finding in any shell script (scripts/install-system-deps installs it)."""
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is missing: run scripts/install-system-deps"
    checked = subprocess.run(
        [shellcheck, *sorted(shell_scripts())], cwd=REPO, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout


def test_the_chroot_venv_is_not_committed() -> None:
    """The chroot's venv (.debian13/venv, inside the repository) is ignored by git."""
    assert ".debian13/" in (REPO / ".gitignore").read_text().split()


def test_the_chroot_cluster_has_ports_of_its_own() -> None:
    """The chroot's cluster does not use the host cluster's default ports (6817-6821), so both
    run side by side."""
    text = DEBIAN13.read_text()
    ctld = int(re.findall(r"LOCAL_CLUSTER_CTLD_PORT=(\d+)", text)[0])
    slurmd = int(re.findall(r"LOCAL_CLUSTER_SLURMD_PORT=(\d+)", text)[0])
    assert {ctld, *range(slurmd, slurmd + 4)}.isdisjoint(range(6817, 6822))


def test_the_chroot_takes_updates_and_security_fixes() -> None:
    """The chroot's apt sources name trixie, trixie-updates and trixie-security."""
    text = DEBIAN13.read_text()
    assert "SUITE=trixie" in text.split()
    assert "$SUITE-updates" in text and "$SUITE-security" in text


def run_status(root: Path) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "DEBIAN13_ROOT": str(root), "DEBIAN13_MAX_AGE_DAYS": "7"}
    return subprocess.run(
        [DEBIAN13, "status"], env=environ, capture_output=True, text=True, check=False
    )


def stamp() -> str:
    made = subprocess.run([DEBIAN13, "stamp"], capture_output=True, text=True, check=True)
    return made.stdout.strip()


def test_status_says_when_the_chroot_must_be_built_again(tmp_path: Path) -> None:
    """No chroot, a stamp over other inputs and an old stamp are each stale (exit 3); a stamp
    over the current inputs, made now, is current (exit 0)."""
    assert re.fullmatch(r"[0-9a-f]{64}", stamp())
    missing = run_status(tmp_path / "none")
    assert (missing.returncode, "none" in missing.stdout) == (3, True)

    now = int(time.time())
    (tmp_path / ".slurm-graphql-stamp").write_text(f"{'0' * 64} {now}\n")
    changed = run_status(tmp_path)
    assert (changed.returncode, "stale: its inputs changed" in changed.stdout) == (3, True)

    (tmp_path / ".slurm-graphql-stamp").write_text(f"{stamp()} {now - 8 * 86400}\n")
    old = run_status(tmp_path)
    assert (old.returncode, "older than 7 days" in old.stdout) == (3, True)

    (tmp_path / ".slurm-graphql-stamp").write_text(f"{stamp()} {now}\n")
    current = run_status(tmp_path)
    assert current.returncode == 0, current.stdout
    assert current.stdout.splitlines()[-1] == "current"


@pytest.mark.parametrize("command", ["build", "test", "pytest", "shell", "status"])
def test_the_script_documents_its_subcommands(command: str) -> None:
    """`scripts/debian13 help` lists each subcommand."""
    shown = subprocess.run([DEBIAN13, "help"], capture_output=True, text=True, check=True)
    assert f"scripts/debian13 {command}" in shown.stdout
