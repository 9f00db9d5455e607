"""One error tree: every exception class the project defines descends from SlurmGraphQLError,
and the tree drawn in slurm_graphql/errors.py's docstring names each of them, where it stands."""

from __future__ import annotations

import importlib
import inspect
import os
import re
import subprocess
import sys

import slurm_graphql.errors
from server.packages import OWN_PACKAGES
from slurm_graphql.errors import SlurmGraphQLError
from tests.test_imports import ROOT, _modules

# Modules that do work when imported: they define no exception class.
_NOT_IMPORTED = {"server.lambda_handler"}
# Checks that `schema`, `resolvers`, `transport` and `server` are this project's own packages,
# before any of them is imported: it may not import the tree to raise.
_OUTSIDE = {"ForeignPackage"}


def defined_errors() -> dict[str, type[BaseException]]:
    found = {}
    for name in sorted(set(_modules()) - _NOT_IMPORTED):
        module = importlib.import_module(name)
        for attribute, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == name
                and not attribute.startswith("_")  # private control flow, never raised out
            ):
                found[attribute] = value
    return found


def test_every_error_the_project_defines_is_in_the_tree() -> None:
    outside = sorted(
        name
        for name, error in defined_errors().items()
        if not issubclass(error, SlurmGraphQLError) and name not in _OUTSIDE
    )
    assert outside == []


def test_the_drawing_names_every_error_under_its_parent() -> None:
    """Each line of the drawing is `├── Name` after the branches it hangs from; a name's parent
    is the nearest name above it that starts further left. Drawing and classes agree exactly."""
    drawing = slurm_graphql.errors.__doc__ or ""
    parents: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    for line in drawing.splitlines():
        match = re.match(r"^[\s│]*(?:[├└]── )?([A-Z][A-Za-z]+)(?:\s|$)", line)
        drawn = re.search(r"[├└]── ", line) or (match is not None and line.strip() == match[1])
        if match is None or not drawn:
            continue
        column = match.start(1)  # deeper in the tree, further right
        while stack and stack[-1][0] >= column:
            stack.pop()
        if stack:
            parents[match[1]] = stack[-1][1]
        stack.append((column, match[1]))
    errors = {n: e for n, e in defined_errors().items() if n not in _OUTSIDE}
    assert set(parents) | {"SlurmGraphQLError"} == set(errors)
    for name, parent in parents.items():
        bases = [base.__name__ for base in errors[name].__bases__]
        assert parent in bases, f"{name} is drawn under {parent}, derives from {bases}"


def test_no_error_is_told_apart_by_graphql_cores_wording() -> None:
    """Errors are classified by type, by where they arise, or by measurement, never by matching
    the words of graphql-core's messages, which change between releases."""
    wordings = ("Syntax Error", "Parsing aborted", "Variable '$", "Unknown operation named")
    quoting = sorted(
        f"{name}: {wording}"
        for name, path in _modules().items()
        for wording in wordings
        if wording in path.read_text()
    )
    assert quoting == []


def test_the_root_has_a_neutral_home() -> None:
    """The tree's root and drawing live beneath every layer: importing them, or the errors a
    parser raises, loads no transport (nor any other layer) in a fresh interpreter."""
    probe = (
        "import sys, slurm_graphql.errors, resolvers.slurm.errors; "
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules} & set(sys.argv[1:]))))"
    )
    layers = [package for package in OWN_PACKAGES if package != "slurm_graphql"]
    loaded = subprocess.run(
        [sys.executable, "-c", probe, *layers],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    ).stdout.split()
    assert loaded == ["resolvers"]  # the parser's own package, and nothing beneath it
    assert SlurmGraphQLError.__module__ == "slurm_graphql.errors"
    assert "SlurmGraphQLError\n" in (slurm_graphql.errors.__doc__ or "")
