"""``ops.settings.load_settings`` against a controlled environment (no database, no servers).

Every test starts from an environment stripped of every variable the settings read, so the
outcome never depends on the shell or on what the test session's runtime exported.
"""

from __future__ import annotations

import os
import re

import pytest

from ops.settings import (
    DEV_SECRET,
    PRODUCTION_REQUIRED,
    SettingsError,
    load_settings,
)

SETTINGS_PREFIXES = (
    "ACADEMY_",
    "DB_",
    "DATABASE_",
    "SQS_",
    "R2_",
    "CDN_",
    "AI_",
    "VIDEO_",
    "MESSAGING_",
    "LOGIN_",
    "ACCESS_TOKEN_",
    "REFRESH_TOKEN_",
    "AWS_",
    "EC2_",
    "HLS_",
    "MIN_SEGMENTS_",
    "THUMBNAIL_",
    "UPLOAD_",
    "RETRY_",
    "BACKOFF_",
    "JOB_",
    "LOG_",
    "EXCEL_",
    "WORKER_",
    "CORS_",
    "PASSWORD_",
)
SETTINGS_NAMES = {"DATABASE_URL", "SECRET_KEY", "SITE_URL", "INTERNAL_WORKER_TOKEN", "DEBUG"}

SEED_QUEUES = {
    "video": "academy-video-jobs",
    "ai-lite": "academy-ai-jobs-lite",
    "ai-basic": "academy-ai-jobs-basic",
    "ai-premium": "academy-ai-jobs-premium",
    "messaging": "academy-messaging-jobs",
}

PRODUCTION_ENV = {
    "ACADEMY_ENV": "production",
    "DATABASE_URL": "postgresql://app:secret@db.internal:5432/academy",
    "SECRET_KEY": "k" * 48,
    "INTERNAL_WORKER_TOKEN": "worker-token",
    "SITE_URL": "https://academy.example",
    "R2_ACCESS_KEY": "r2-access",
    "R2_SECRET_KEY": "r2-secret",
    "R2_ENDPOINT": "https://r2.example",
    "CDN_HLS_SIGNING_SECRET": "cdn-secret",
}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A monkeypatch whose environment holds none of the settings' variables."""
    for name in list(os.environ):
        if name in SETTINGS_NAMES or name.startswith(SETTINGS_PREFIXES):
            monkeypatch.delenv(name)
    return monkeypatch


def _set(env: pytest.MonkeyPatch, values: dict[str, str]) -> None:
    for name, value in values.items():
        env.setenv(name, value)


def _names(message: str, variable: str) -> bool:
    """``variable`` appears as a whole name (``SECRET_KEY`` is not in ``R2_SECRET_KEY``)."""
    return re.search(rf"(?<![A-Z0-9_]){re.escape(variable)}(?![A-Z0-9_])", message) is not None


# --- production requirements -----------------------------------------------------------


def test_complete_production_environment_loads(env: pytest.MonkeyPatch) -> None:
    _set(env, PRODUCTION_ENV)
    settings = load_settings()
    assert settings.is_production
    assert settings.debug is False
    assert settings.secret_key == PRODUCTION_ENV["SECRET_KEY"]
    assert settings.database_url == PRODUCTION_ENV["DATABASE_URL"]


def test_production_without_secret_key_names_it(env: pytest.MonkeyPatch) -> None:
    _set(env, {k: v for k, v in PRODUCTION_ENV.items() if k != "SECRET_KEY"})
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert _names(str(info.value), "SECRET_KEY"), str(info.value)


def test_production_blank_secret_key_counts_as_missing(env: pytest.MonkeyPatch) -> None:
    _set(env, {**PRODUCTION_ENV, "SECRET_KEY": "   "})
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert _names(str(info.value), "SECRET_KEY"), str(info.value)


@pytest.mark.parametrize("variable", PRODUCTION_REQUIRED)
def test_production_names_each_missing_required_variable(
    env: pytest.MonkeyPatch, variable: str
) -> None:
    _set(env, {k: v for k, v in PRODUCTION_ENV.items() if k != variable})
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert _names(message, variable), message
    # Only the missing one is blamed.
    others = [n for n in PRODUCTION_REQUIRED if n != variable]
    assert not [n for n in others if _names(message, n)], message


def test_production_without_database_url_names_it(env: pytest.MonkeyPatch) -> None:
    _set(env, {k: v for k, v in PRODUCTION_ENV.items() if k != "DATABASE_URL"})
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert _names(str(info.value), "DATABASE_URL"), str(info.value)


def test_production_accepts_db_parts_instead_of_database_url(env: pytest.MonkeyPatch) -> None:
    _set(env, {k: v for k, v in PRODUCTION_ENV.items() if k != "DATABASE_URL"})
    _set(env, {"DB_NAME": "academy", "DB_USER": "app", "DB_PASSWORD": "pw", "DB_HOST": "db"})
    assert load_settings().database_url == "postgresql://app:pw@db:5432/academy"


def test_production_rejects_short_secret_key(env: pytest.MonkeyPatch) -> None:
    _set(env, {**PRODUCTION_ENV, "SECRET_KEY": "x" * 31})
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert _names(str(info.value), "SECRET_KEY"), str(info.value)


def test_production_accepts_32_character_secret_key(env: pytest.MonkeyPatch) -> None:
    _set(env, {**PRODUCTION_ENV, "SECRET_KEY": "x" * 32})
    assert load_settings().secret_key == "x" * 32


def test_short_secret_key_is_allowed_outside_production(env: pytest.MonkeyPatch) -> None:
    _set(env, {"ACADEMY_ENV": "test", "SECRET_KEY": "short"})
    assert load_settings().secret_key == "short"


def test_unknown_environment_names_academy_env(env: pytest.MonkeyPatch) -> None:
    env.setenv("ACADEMY_ENV", "staging")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert _names(str(info.value), "ACADEMY_ENV"), str(info.value)


def test_the_cheapest_password_hashes_are_for_tests_only(env: pytest.MonkeyPatch) -> None:
    assert load_settings().password_hash_profile == "RFC_9106_LOW_MEMORY"
    _set(env, {"ACADEMY_ENV": "test", "PASSWORD_HASH_PROFILE": "cheapest"})
    assert load_settings().password_hash_profile == "CHEAPEST"
    for environment in ("development", "production"):
        _set(env, {**PRODUCTION_ENV, "ACADEMY_ENV": environment})
        with pytest.raises(SettingsError) as info:
            load_settings()
        assert _names(str(info.value), "PASSWORD_HASH_PROFILE"), str(info.value)


# --- malformed values name their variable ----------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SQS_WAIT_TIME_SECONDS", "abc"),
        ("SQS_MAX_RECEIVE_COUNT", "3.5"),
        ("LOGIN_MAX_FAILURES_PER_ACCOUNT", "five"),
        ("ACCESS_TOKEN_TTL_SECONDS", "15m"),
        ("SQS_VISIBILITY_TIMEOUT_AI_LITE", "soon"),
        ("THUMBNAIL_AT_SECONDS", "five"),
        ("DEBUG", "maybe"),
        ("PASSWORD_HASH_PROFILE", "bcrypt"),
    ],
)
def test_malformed_value_names_the_variable(
    env: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    env.setenv(variable, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert _names(message, variable), message
    assert value in message


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SQS_WAIT_TIME_SECONDS", "21"),
        ("SQS_WAIT_TIME_SECONDS", "-1"),
        ("SQS_VISIBILITY_TIMEOUT_VIDEO", "1"),
        ("SQS_VISIBILITY_TIMEOUT_MESSAGING", "43201"),
        ("JOB_MAX_RECEIVES", "1"),
        ("JOB_MAX_RECEIVES", "6"),  # beyond SQS_MAX_RECEIVE_COUNT: SQS would take it first
    ],
)
def test_out_of_range_value_names_the_variable(
    env: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    env.setenv(variable, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert _names(str(info.value), variable), str(info.value)


def test_integer_values_are_read(env: pytest.MonkeyPatch) -> None:
    _set(env, {"SQS_WAIT_TIME_SECONDS": " 7 ", "SQS_VISIBILITY_TIMEOUT_AI_PREMIUM": "600"})
    settings = load_settings()
    assert settings.sqs_wait_time_seconds == 7
    assert settings.visibility_timeouts["ai-premium"] == 600


def test_upload_and_worker_limits_are_read(env: pytest.MonkeyPatch) -> None:
    defaults = load_settings()
    assert (defaults.worker_memory_limit_mb, defaults.job_max_receives) == (3072, 3)
    assert defaults.excel_max_uncompressed_bytes == 256 * 1024 * 1024
    _set(
        env,
        {
            "WORKER_MEMORY_LIMIT_MB": "512",
            "JOB_MAX_RECEIVES": "7",
            "SQS_MAX_RECEIVE_COUNT": "8",
            "EXCEL_MAX_UNCOMPRESSED_BYTES": "1000",
            "EXCEL_MAX_MEMBER_BYTES": "900",
            "EXCEL_MAX_SHARED_STRINGS_BYTES": "800",
            "EXCEL_MAX_CELL_BYTES": "700",
            "EXCEL_MAX_COMPRESSION_RATIO": "12.5",
        },
    )
    s = load_settings()
    assert (s.worker_memory_limit_mb, s.job_max_receives) == (512, 7)
    assert (
        s.excel_max_uncompressed_bytes,
        s.excel_max_member_bytes,
        s.excel_max_shared_strings_bytes,
        s.excel_max_cell_bytes,
        s.excel_max_compression_ratio,
    ) == (1000, 900, 800, 700, 12.5)


# --- database URL ----------------------------------------------------------------------


def test_db_parts_compose_a_url(env: pytest.MonkeyPatch) -> None:
    _set(
        env,
        {
            "DB_NAME": "academy",
            "DB_USER": "app user",
            "DB_PASSWORD": "p@ss:w/rd#1",
            "DB_HOST": "db.internal",
            "DB_PORT": "6543",
        },
    )
    assert (
        load_settings().database_url
        == "postgresql://app%20user:p%40ss%3Aw%2Frd%231@db.internal:6543/academy"
    )


def test_db_name_alone_uses_defaults(env: pytest.MonkeyPatch) -> None:
    env.setenv("DB_NAME", "academy")
    assert load_settings().database_url == "postgresql://postgres@127.0.0.1:5432/academy"


def test_database_url_wins_over_db_parts(env: pytest.MonkeyPatch) -> None:
    _set(env, {"DATABASE_URL": "postgresql://x@h:1/d", "DB_NAME": "other", "DB_HOST": "elsewhere"})
    assert load_settings().database_url == "postgresql://x@h:1/d"


def test_no_database_configured_outside_production_is_empty(env: pytest.MonkeyPatch) -> None:
    assert load_settings().database_url == ""


def test_a_direct_url_means_database_url_is_a_pooler(env: pytest.MonkeyPatch) -> None:
    _set(env, {"DATABASE_URL": "postgresql://x@direct:5432/d"})
    assert (load_settings().database_pooled, load_settings().database_direct_url) == (False, "")
    _set(
        env,
        {
            "DATABASE_URL": "postgresql://x@pool:6432/d",
            "DATABASE_DIRECT_URL": "postgresql://x@db/d",
        },
    )
    settings = load_settings()
    assert (settings.database_pooled, settings.database_direct_url) == (True, "postgresql://x@db/d")
    env.setenv("DATABASE_POOLED", "false")
    assert load_settings().database_pooled is False


def test_pooled_without_a_direct_url(env: pytest.MonkeyPatch) -> None:
    _set(env, {"DATABASE_URL": "postgresql://x@pool:6432/d", "DATABASE_POOLED": "true"})
    settings = load_settings()
    assert (settings.database_pooled, settings.database_direct_url) == (True, "")
    env.setenv("DATABASE_POOLED", "sometimes")
    with pytest.raises(SettingsError, match="DATABASE_POOLED"):
        load_settings()


# --- defaults and queues ---------------------------------------------------------------


def test_defaults_are_development(env: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert settings.environment == "development"
    assert settings.debug is True
    assert settings.secret_key == DEV_SECRET
    assert settings.sqs_wait_time_seconds == 20


def test_default_queues_are_the_seed_names(env: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert settings.queues == SEED_QUEUES
    for tier, name in SEED_QUEUES.items():
        assert settings.queue_for(tier) == name
        assert settings.dlq_for(tier) == f"{name}-dlq"
        assert settings.tier_of_queue(name) == tier
    assert settings.tier_of_queue("academy-video-jobs-dlq") is None


def test_queue_names_can_be_overridden(env: pytest.MonkeyPatch) -> None:
    env.setenv("VIDEO_SQS_QUEUE_NAME", "staging-video")
    settings = load_settings()
    assert settings.queue_for("video") == "staging-video"
    assert settings.dlq_for("video") == "staging-video-dlq"
    assert settings.queue_for("messaging") == SEED_QUEUES["messaging"]


def test_unknown_tier_is_a_settings_error(env: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    with pytest.raises(SettingsError, match="gpu"):
        settings.queue_for("gpu")
    with pytest.raises(SettingsError):
        settings.dlq_for("gpu")


# --- CORS --------------------------------------------------------------------------------


def test_cors_is_same_origin_only_by_default(env: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert settings.cors_allowed_origins == ()
    assert settings.cors_allow_credentials is False


def test_cors_origins_are_a_comma_separated_list(env: pytest.MonkeyPatch) -> None:
    _set(env, {"CORS_ALLOWED_ORIGINS": " https://a.example ,https://b.example:8443,, "})
    assert load_settings().cors_allowed_origins == ("https://a.example", "https://b.example:8443")


@pytest.mark.parametrize("origins", ["*", "https://*.academy.example", "https://a.example,*"])
def test_cors_refuses_a_wildcard_with_credentials(env: pytest.MonkeyPatch, origins: str) -> None:
    _set(env, {"CORS_ALLOWED_ORIGINS": origins, "CORS_ALLOW_CREDENTIALS": "true"})
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert _names(str(info.value), "CORS_ALLOW_CREDENTIALS"), str(info.value)


def test_cors_allows_credentials_for_exact_origins(env: pytest.MonkeyPatch) -> None:
    _set(env, {"CORS_ALLOWED_ORIGINS": "https://a.example", "CORS_ALLOW_CREDENTIALS": "true"})
    assert load_settings().cors_allow_credentials is True


@pytest.mark.parametrize("origin", ["https://a.example/", "https://a.example/app", "a.example"])
def test_cors_refuses_what_is_not_an_origin(env: pytest.MonkeyPatch, origin: str) -> None:
    _set(env, {"CORS_ALLOWED_ORIGINS": origin})
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert _names(str(info.value), "CORS_ALLOWED_ORIGINS"), str(info.value)
