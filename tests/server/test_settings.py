"""Settings come from the environment once, with clear errors for bad values."""

from __future__ import annotations

import pytest

from server.settings import Settings, SettingsError


def test_defaults_serve_the_local_cluster() -> None:
    """With nothing set, one cluster named local over local://."""
    settings = Settings.from_environ({})
    assert settings.clusters == (("local", "local://"),)
    assert settings.cache_ttl == 1.0
    assert settings.max_page_size == 10_000
    assert settings.graphiql and settings.response_cache


def test_clusters_keep_their_order_and_the_first_is_the_default() -> None:
    """`name=url,name=url` becomes ordered pairs; URLs keep their query strings."""
    environ = {"SLURM_GRAPHQL_CLUSTERS": "hpc=local://?timeout=5, gpu=local://"}
    assert Settings.from_environ(environ).clusters == (
        ("hpc", "local://?timeout=5"),
        ("gpu", "local://"),
    )


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"SLURM_GRAPHQL_CLUSTERS": "local"}, "not name=url"),
        ({"SLURM_GRAPHQL_CLUSTERS": "a=local://,a=local://"}, "listed twice"),
        ({"SLURM_GRAPHQL_CLUSTERS": "bad name=local://"}, "not name=url"),
        ({"SLURM_GRAPHQL_CACHE_TTL": "soon"}, "not a number"),
        ({"SLURM_GRAPHQL_CACHE_TTL": "-1"}, "at least 0"),
        ({"SLURM_GRAPHQL_MAX_PAGE_SIZE": "0"}, "at least 1"),
        ({"SLURM_GRAPHQL_GRAPHIQL": "maybe"}, "not a boolean"),
        ({"SLURM_GRAPHQL_LOG_FORMAT": "xml"}, "not one of text, json"),
        ({"SLURM_GRAPHQL_LOG_LEVEL": "loud"}, "not one of debug"),
        ({"SLURM_GRAPHQL_METRICS": "sometimes"}, "not a boolean"),
        ({"SLURM_GRAPHQL_READY_INTERVAL": "0.5"}, "at least 1"),
    ],
)
def test_bad_values_name_the_variable(environ: dict[str, str], message: str) -> None:
    """Each mistake is refused at start-up with the variable's name and the fix."""
    with pytest.raises(SettingsError, match=message):
        Settings.from_environ(environ)


def test_operations_settings() -> None:
    """Log format and level, metrics and the readiness interval: defaults, then set."""
    defaults = Settings.from_environ({})
    assert (defaults.log_format, defaults.log_level) == ("text", "info")
    assert defaults.metrics and defaults.ready_interval == 5.0
    environ = {
        "SLURM_GRAPHQL_LOG_FORMAT": "JSON",
        "SLURM_GRAPHQL_LOG_LEVEL": "debug",
        "SLURM_GRAPHQL_METRICS": "false",
        "SLURM_GRAPHQL_READY_INTERVAL": "10",
    }
    settings = Settings.from_environ(environ)
    assert (settings.log_format, settings.log_level) == ("json", "debug")
    assert not settings.metrics and settings.ready_interval == 10.0


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://cache:6379", "redis:// or rediss://"),
        ("unix:///run/redis.sock", "redis:// or rediss://"),
        ("redis://", "no host"),
        ("redis://:s3cret@cache:notaport", "not a URL"),
        ("rediss://user:s3cret@cache:6379/zero", "database number"),
        ("redis://:s3cret@cache:0", "port 0"),
    ],
)
def test_a_bad_redis_url_is_refused_without_repeating_it(url: str, message: str) -> None:
    """SLURM_GRAPHQL_REDIS_URL must be redis:// or rediss:// with a host; the message never
    repeats the URL, which may hold a password."""
    with pytest.raises(SettingsError, match=message) as refused:
        Settings.from_environ({"SLURM_GRAPHQL_REDIS_URL": url})
    assert "s3cret" not in str(refused.value)


def test_the_redis_url_is_kept_and_never_printed() -> None:
    """Unset, nothing is shared; set (TLS, auth, a database), it is kept as given and left out
    of the settings' repr, which logs may show."""
    assert Settings.from_environ({}).redis_url is None
    url = "rediss://default:s3cret@my-cache.serverless.euw1.cache.amazonaws.com:6379/0"
    settings = Settings.from_environ({"SLURM_GRAPHQL_REDIS_URL": f" {url} "})
    assert settings.redis_url == url
    assert "s3cret" not in repr(settings)
