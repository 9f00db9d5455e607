"""The one error bad configuration raises, shared by the modules that read settings."""

from __future__ import annotations

from slurm_graphql.errors import SlurmGraphQLError


class SettingsError(SlurmGraphQLError, ValueError):
    """A configuration value is wrong; the message names the variable and the fix."""
