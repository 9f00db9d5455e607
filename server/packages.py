"""The project's top-level packages have common names (`schema`, `resolvers`, `transport`,
`server`, and `slurm_graphql` beneath them); PyPI has a `schema` package, for one. Installed
beside such a package, one of ours could be shadowed and the service would fail later with a
confusing error, or run someone else's code. So start-up checks, before anything is imported,
that the five packages are this project's own: each is a directory beside the others, holding
the module we expect there."""

from __future__ import annotations

import importlib.util
from pathlib import Path

# One module per package that no look-alike is likely to have.
OWN_PACKAGES = {
    "schema": "job.py",
    "resolvers": "snapshot.py",
    "transport": "shell_batch.py",
    "server": "packages.py",
    "slurm_graphql": "errors.py",
}


class ForeignPackage(ImportError):
    """A top-level name resolves to a package that is not this project's."""


def check_own_packages() -> None:
    """Raise ForeignPackage naming the intruder and the fix, if any package is not ours."""
    here = Path(__file__).resolve().parent.parent
    for name, marker in OWN_PACKAGES.items():
        spec = importlib.util.find_spec(name)
        origin = Path(spec.origin).resolve() if spec and spec.origin else None
        if origin is None or origin.name != "__init__.py" or origin.parent.parent != here:
            raise ForeignPackage(
                f"the module {name!r} is {origin or 'missing'}, not slurm-graphql's own package "
                f"in {here}: install slurm-graphql into its own virtual environment or image"
            )
        if not (origin.parent / marker).is_file():
            raise ForeignPackage(
                f"the package {name!r} at {origin.parent} lacks {marker}: it is not "
                "slurm-graphql's; install slurm-graphql into its own virtual environment or image"
            )
