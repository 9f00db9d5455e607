"""The session's cluster fixture tells a running cluster from one it must start (and stop)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import LOCAL_CLUSTER, controller_running

pytestmark = pytest.mark.cluster


def status(cluster_dir: str) -> str:
    environ = {**os.environ, "LOCAL_CLUSTER_DIR": cluster_dir}
    done = subprocess.run(
        [LOCAL_CLUSTER, "status"], capture_output=True, text=True, check=False, env=environ
    )
    return done.stdout


def test_a_running_controller_is_found_by_its_process(slurm_cluster: str, tmp_path: Path) -> None:
    """The session's cluster reads as running; a directory with no cluster does not (so the
    fixture would start it, and stop it afterwards)."""
    assert controller_running(status(str(Path(slurm_cluster).parent)))
    assert not controller_running(status(str(tmp_path / "no-cluster")))
