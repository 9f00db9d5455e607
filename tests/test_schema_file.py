"""schema.graphql is the schema the code serves, and breaking changes need the CHANGELOG's word:
`make check` fails on a break since the baseline that the Unreleased section does not name."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from schema.contract import breaking_changes, current_sdl, unacknowledged, unreleased

REPO = Path(__file__).resolve().parent.parent

OLD = """
type Query { cluster: Cluster }
type Cluster { name: String! nodes: [Node!]! jobs: [Job!]! }
type Node { name: String! }
type Job { id: String! name: String! }
"""
# The renames of issue 15: Node becomes an interface, the compute node ComputeNode, Job.id an ID.
NEW = """
type Query { cluster: Cluster node(id: ID!): Node }
interface Node { id: ID! }
type Cluster implements Node { id: ID! name: String! nodes: [ComputeNode!]! jobs: [Job!]! }
type ComputeNode implements Node { id: ID! name: String! }
type Job implements Node { id: ID! displayId: String! name: String! }
"""
CHANGELOG = """# Changelog

## Unreleased

- **Breaking:** `Job.id` is a global id; `Node` is an interface, the compute node `ComputeNode`
  (`Cluster.nodes`).

## 0.1.0

- `Job.name` went away once, long ago.
"""


def test_schema_file_is_current() -> None:
    """schema.graphql holds the served schema: run `make schema` when this fails."""
    assert (REPO / "schema.graphql").read_text() == current_sdl()


def test_breaks_are_found_with_their_coordinates() -> None:
    """Type and field changes are breaks, named by the coordinate the CHANGELOG must cite;
    adding fields and types is not."""
    assert sorted(coordinate for coordinate, _ in breaking_changes(OLD, NEW)) == [
        "Cluster.nodes",
        "Job.id",
        "Node",
    ]
    assert breaking_changes(NEW, NEW + "type Extra { x: Int }") == []


def test_a_break_passes_only_when_the_unreleased_section_names_it() -> None:
    """Every break named in backticks in Unreleased passes; one left out is reported, and a
    mention in an older release's section does not count."""
    assert unacknowledged(OLD, NEW, CHANGELOG) == []
    forgetful = CHANGELOG.replace("(`Cluster.nodes`)", "")
    [problem] = unacknowledged(OLD, NEW, forgetful)
    assert "Cluster.nodes" in problem
    without_name = NEW.replace("displayId: String! name: String!", "displayId: String!")
    dropped = unacknowledged(NEW, without_name, CHANGELOG)
    assert len(dropped) == 1 and "Job.name" in dropped[0], dropped
    assert "Job.name" not in unreleased(CHANGELOG)


@pytest.mark.skipif(shutil.which("git") is None, reason="the check compares git revisions")
def test_the_repository_passes_its_own_check() -> None:
    """`scripts/schema-contract check`, as `make check` runs it, passes on this tree."""
    inside = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--git-dir"], capture_output=True, check=False
    )
    if inside.returncode != 0:
        pytest.skip("not a git checkout (a built package or a copied tree)")
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "schema-contract"), "check"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
