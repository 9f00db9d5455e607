"""The Debian 13 run is what it claims to be: inside the chroot of scripts/debian13, the suite
runs on Python 3.13 and Slurm 24.11, in namespaces of its own; outside, none of its mounts show."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

INSIDE = os.environ.get("DEBIAN13_CHROOT") == "1"
inside_only = pytest.mark.skipif(not INSIDE, reason="runs in the chroot (scripts/debian13 test)")
REPO = Path(__file__).resolve().parents[2]


def mounts() -> dict[str, str]:
    """Mount point -> file system type, as this process's mount namespace has them."""
    found = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        found[fields[4]] = fields[fields.index("-") + 1]
    return found


@inside_only
def test_the_chroot_runs_debian_13_with_python_3_13_and_slurm_24_11() -> None:
    """Debian 13's Python and Slurm, not the host's."""
    assert sys.version_info[:2] == (3, 13)
    assert Path("/etc/debian_version").read_text().startswith("13.")
    for package in ("slurmctld", "slurmd", "slurm-client"):
        version = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Version}", package],
            capture_output=True,
            text=True,
            check=True,
        )
        assert re.match(r"24\.11\.", version.stdout), (package, version.stdout)


@inside_only
def test_the_chroot_has_its_own_proc_dev_run_and_tmp() -> None:
    """A new PID namespace (tini is PID 1), fresh /proc, /dev, /run and /tmp, the repository
    mounted at its own path, and the cluster on the chroot's ports."""
    assert Path("/proc/1/comm").read_text().strip() == "tini"
    seen = mounts()
    assert seen["/proc"] == "proc"
    assert {seen["/dev"], seen["/run"], seen["/tmp"], seen["/dev/shm"]} == {"tmpfs"}
    assert seen["/dev/pts"] == "devpts"
    assert str(REPO) in seen
    assert os.environ["LOCAL_CLUSTER_CTLD_PORT"] == "6917"


def test_no_chroot_mount_shows_outside_it() -> None:
    """Whether or not a chroot run is going on, the host's mount namespace has nothing mounted
    under the chroots' directory: every run mounts in a namespace of its own."""
    if INSIDE:
        pytest.skip("PID 1 here is the chroot's own tini")
    root = os.environ.get("DEBIAN13_ROOT", "/var/cache/slurm-graphql/trixie")
    parent = os.path.dirname(root)
    assert [point for point in mounts() if point.startswith(parent)] == []
