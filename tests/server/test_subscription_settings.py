"""Subscription settings come from the environment like the others."""

from __future__ import annotations

import pytest

from server.settings import Settings, SettingsError


def test_subscription_settings_are_read_from_the_environment() -> None:
    """Poll interval (fractional seconds), per-connection limit and mailbox size."""
    settings = Settings.from_environ(
        {
            "SLURM_GRAPHQL_POLL_INTERVAL": "0.5",
            "SLURM_GRAPHQL_MAX_SUBSCRIPTIONS": "7",
            "SLURM_GRAPHQL_SUBSCRIBER_QUEUE": "32",
        }
    )
    assert settings.poll_interval == 0.5
    assert settings.max_subscriptions_per_connection == 7
    assert settings.subscriber_queue == 32
    assert Settings.from_environ({}).poll_interval == 2.0


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"SLURM_GRAPHQL_POLL_INTERVAL": "0"}, "at least 0.05"),
        ({"SLURM_GRAPHQL_MAX_SUBSCRIPTIONS": "none"}, "not a number"),
        ({"SLURM_GRAPHQL_SUBSCRIBER_QUEUE": "0"}, "at least 1"),
    ],
)
def test_bad_subscription_settings_name_the_variable(environ: dict[str, str], message: str) -> None:
    """A poll interval too short to be one, or a limit that is not a number, is refused."""
    with pytest.raises(SettingsError, match=message):
        Settings.from_environ(environ)
