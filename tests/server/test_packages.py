"""Start-up refuses a look-alike package shadowing one of ours, and says what to do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent


def _import_server(shadow_dir: Path) -> subprocess.CompletedProcess[str]:
    # A fresh interpreter: sys.path order decides which `schema` wins, as it would in a shared env.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shadow_dir), str(ROOT)])}
    return subprocess.run(
        [sys.executable, "-c", "import server.app"],
        env=env,
        cwd=shadow_dir,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_our_packages_pass_the_check() -> None:
    """The project's own layout starts."""
    result = _import_server(ROOT)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "shadow",
    [
        {"schema.py": "VERSION = 'pypi'\n"},
        {"transport/__init__.py": "", "transport/base.py": ""},
        {"slurm_graphql/__init__.py": "", "slurm_graphql/errors.py": ""},
    ],
    ids=["a module named schema", "a package named transport", "a package named slurm_graphql"],
)
def test_a_shadowing_package_is_named_with_the_fix(tmp_path: Path, shadow: dict[str, str]) -> None:
    """A look-alike earlier on sys.path stops start-up, naming it and the own-environment fix."""
    for name, text in shadow.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    result = _import_server(tmp_path)
    assert result.returncode != 0
    intruder = next(iter(shadow)).split("/")[0].removesuffix(".py")
    assert "ForeignPackage" in result.stderr
    assert f"{intruder!r}" in result.stderr
    assert "own virtual environment" in result.stderr
