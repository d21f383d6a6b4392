"""Process configuration, read once from the environment.

The variable names are the seed's (see README). ``get_settings()`` is cached: tests
that change the environment call ``get_settings.cache_clear()``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import quote

ENVIRONMENTS = ("development", "test", "production")

# tier -> the env var holding its queue name, and the seed default.
TIER_QUEUE_ENV: dict[str, tuple[str, str]] = {
    "video": ("VIDEO_SQS_QUEUE_NAME", "academy-video-jobs"),
    "ai-lite": ("AI_SQS_QUEUE_NAME_LITE", "academy-ai-jobs-lite"),
    "ai-basic": ("AI_SQS_QUEUE_NAME_BASIC", "academy-ai-jobs-basic"),
    "ai-premium": ("AI_SQS_QUEUE_NAME_PREMIUM", "academy-ai-jobs-premium"),
    "messaging": ("MESSAGING_SQS_QUEUE_NAME", "academy-messaging-jobs"),
}

# Default visibility timeouts: long enough that a heartbeat (every third of it) is cheap,
# short enough that a killed worker's message comes back soon.
DEFAULT_VISIBILITY: dict[str, int] = {
    "video": 300,
    "ai-lite": 120,
    "ai-basic": 120,
    "ai-premium": 120,
    "messaging": 60,
}


class SettingsError(RuntimeError):
    """A required setting is missing or malformed; the message names the variable."""


def _env(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def _bool(name: str, default: bool = False) -> bool:
    raw = _env(name)
    if not raw:
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be a boolean (true/false), got {raw!r}")


def _positive(name: str, default: int) -> int:
    value = _int(name, default)
    if value < 1:
        raise SettingsError(f"{name} must be at least 1, got {value}")
    return value


def _int(name: str, default: int) -> int:
    raw = _env(name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None


def _float(name: str, default: float) -> float:
    raw = _env(name)
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None


def _csv(name: str) -> tuple[str, ...]:
    """A comma-separated list; blanks around and between commas are dropped."""
    return tuple(part.strip() for part in _env(name).split(",") if part.strip())


def _database_url() -> str:
    url = _env("DATABASE_URL")
    if url:
        return url
    name = _env("DB_NAME")
    if not name:
        return ""
    user = quote(_env("DB_USER", "postgres"), safe="")
    password = _env("DB_PASSWORD")
    auth = f"{user}:{quote(password, safe='')}" if password else user
    return f"postgresql://{auth}@{_env('DB_HOST', '127.0.0.1')}:{_env('DB_PORT', '5432')}/{name}"


@dataclass(frozen=True, eq=False)
class Settings:
    environment: str
    debug: bool
    secret_key: str
    site_url: str
    internal_worker_token: str

    database_url: str
    # Straight to Postgres, for what transaction pooling cannot carry (LISTEN, migrations);
    # "" when DATABASE_URL is direct itself (or pooled with no direct route: see README).
    database_direct_url: str
    # DATABASE_URL is a pooler that does not carry named prepared statements across server
    # connections (PgBouncer < 1.21 in transaction mode): asyncpg's statement cache off.
    database_pooled: bool

    aws_region: str
    sqs_endpoint_url: str
    sqs_wait_time_seconds: int
    sqs_max_receive_count: int
    queues: dict[str, str]
    visibility_timeouts: dict[str, int]

    r2_access_key: str
    r2_secret_key: str
    r2_endpoint: str
    r2_public_base_url: str
    r2_region: str
    r2_prefix: str
    r2_ai_bucket: str
    r2_video_bucket: str
    r2_excel_bucket: str
    r2_storage_bucket: str

    cdn_hls_base_url: str
    cdn_hls_signing_secret: str
    cdn_hls_signing_key_id: str

    ec2_idle_stop_threshold: int
    ai_worker_basic_poll_weight: int
    ai_worker_lite_poll_weight: int
    video_worker_id: str

    hls_time_seconds: int
    min_segments_per_variant: int
    thumbnail_at_seconds: float
    upload_max_concurrency: int
    # Processes per host: API processes on one port (``ops.commands.api``), and worker
    # processes per tier that ``just dev`` starts (``just worker TIER N`` says its own).
    api_processes: int
    worker_processes: int
    retry_max_attempts: int
    backoff_base_seconds: float
    backoff_cap_seconds: float
    video_worker_temp_dir: str

    access_token_ttl_seconds: int
    refresh_token_ttl_seconds: int
    # Failed log-ins of one account from one client, then of the account from anywhere
    # (higher, so a stranger cannot lock an account's owner out), within the window.
    login_max_failures_per_account: int
    login_max_failures_per_account_global: int
    login_max_attempts_per_client: int
    password_hash_profile: str
    login_window_seconds: int
    job_sweep_after_seconds: int
    # The lifeline: a job silent for its tier's visibility timeout plus this margin has lost
    # its message; it is re-sent at most ``job_lifeline_max_resends`` times, then FAILED.
    job_lifeline_margin_seconds: int
    job_lifeline_max_resends: int
    log_level: str
    # Extra modules whose @job actors the broker binds (the test suite's own actors).
    extra_actor_modules: tuple[str, ...] = ()
    # Excel import: the largest upload accepted (413 above it) and the most data rows a
    # sheet may have (a bigger one ends FAILED before anything is applied).
    excel_max_upload_bytes: int = 20 * 1024 * 1024
    excel_max_rows: int = 200_000
    # An .xlsx is a ZIP: before it is parsed, what it unpacks to is bounded (all members,
    # any one member, the shared strings, the longest run of text between two tags) and so
    # is how much any member of 1 MiB or more expands (uncompressed / compressed).
    excel_max_uncompressed_bytes: int = 256 * 1024 * 1024
    excel_max_member_bytes: int = 128 * 1024 * 1024
    excel_max_shared_strings_bytes: int = 64 * 1024 * 1024
    excel_max_cell_bytes: int = 128 * 1024
    excel_max_compression_ratio: float = 100.0
    # Each worker process's data ceiling (RLIMIT_DATA) in MiB; 0 = none. A step that hits
    # it ends FAILED ``out_of_memory`` instead of taking the host.
    worker_memory_limit_mb: int = 3072
    # A message received this many times was held by workers that died each time (killed,
    # out of memory): its job ends FAILED ``worker_killed`` and it goes to the tier's DLQ
    # instead of running again. At most SQS_MAX_RECEIVE_COUNT.
    job_max_receives: int = 3
    # Idle shutdown (ops.idle): ec2 = stop this instance, exit = exit 0, off = never.
    idle_stop_mode: str = "off"
    ec2_metadata_endpoint: str = "http://169.254.169.254"
    ec2_endpoint_url: str = ""
    # Bearer token for GET /metrics; unset = only loopback/private networks may scrape.
    metrics_token: str = ""
    # Proxies whose X-Forwarded-For names the client (IPs or networks, "*" = any); the
    # client address is what the per-client login limit counts. Empty: none is trusted.
    forwarded_allow_ips: tuple[str, ...] = ()
    # Seconds a reading of the SQS queue attributes serves /metrics (0 = read every scrape).
    metrics_queue_refresh_seconds: float = 10.0
    # Dramatiq's own per-process Prometheus exposition on worker hosts; 0 = off.
    worker_metrics_port: int = 0
    worker_metrics_host: str = "127.0.0.1"
    # Messaging (SMS/LMS/Alimtalk). The provider a tenant without its own credentials uses:
    # "console" writes messages to the log and an outbox file; "" (production default)
    # sends nothing until the academy stores its provider credentials.
    messaging_provider: str = "console"
    # Fernet keys (comma-separated, newest first) for provider credentials at rest; when
    # unset, one is derived from SECRET_KEY.
    messaging_credentials_keys: tuple[str, ...] = ()
    solapi_base_url: str = "https://api.solapi.com"
    messaging_http_timeout_seconds: float = 10.0
    # A row claimed for sending longer ago than this, and still unresolved, is reconciled
    # with the provider (its sender died or timed out). Must exceed the HTTP timeout.
    messaging_send_lease_seconds: int = 60
    messaging_batch_size: int = 100
    messaging_rate_per_second: float = 50.0
    messaging_poll_delay_seconds: int = 60
    messaging_outbox_poll_seconds: float = 5.0
    messaging_console_outbox: str = ""
    # OMR: the tier that reads scans ("" = ai-lite for small rescans of at most
    # omr_lite_max_pages pages, ai-basic otherwise; "ai-premium" on a GPU host), and the
    # largest upload accepted.
    omr_tier: str = ""
    omr_lite_max_pages: int = 3
    omr_max_upload_bytes: int = 100 * 1024 * 1024
    # Video: the largest source accepted, the size above which uploads go multipart (and
    # its part size), the watched share that completes a video, and how long a source is
    # kept after its video is READY (`just storage-cleanup` deletes it then).
    video_max_upload_bytes: int = 20 * 1024**3
    video_multipart_threshold_bytes: int = 256 * 1024**2
    video_multipart_part_bytes: int = 64 * 1024**2
    video_completion_percent: float = 90.0
    video_raw_retention_days: int = 30
    # The output frame rate is the source's maximum sustained rate, never above this (30 or
    # 60); sources longer than the duration limit are refused (``too_long``).
    video_max_fps: int = 30
    video_max_duration_seconds: int = 6 * 3600
    # Browsers on other origins (the SPAs' CDN): exact origins, or "*" in a part of one.
    # Empty = same origin only (no CORS headers at all). Credentials (cookies) are never
    # allowed together with a wildcard: ``load_settings`` refuses that combination.
    cors_allowed_origins: tuple[str, ...] = ()
    cors_allow_credentials: bool = False
    # How long a browser may reuse a preflight answer (browsers cap it: Chromium at 2 h).
    cors_max_age_seconds: int = 600
    # A comment on an idle job event stream this often keeps proxies from closing it.
    job_events_heartbeat_seconds: float = 15.0

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    @property
    def buckets(self) -> dict[str, str]:
        return {
            "R2_AI_BUCKET": self.r2_ai_bucket,
            "R2_VIDEO_BUCKET": self.r2_video_bucket,
            "R2_EXCEL_BUCKET": self.r2_excel_bucket,
            "R2_STORAGE_BUCKET": self.r2_storage_bucket,
        }

    def queue_for(self, tier: str) -> str:
        try:
            return self.queues[tier]
        except KeyError:
            raise SettingsError(
                f"unknown worker tier {tier!r}; one of {sorted(self.queues)}"
            ) from None

    def dlq_for(self, tier: str) -> str:
        return f"{self.queue_for(tier)}-dlq"

    def tier_of_queue(self, queue_name: str) -> str | None:
        for tier, name in self.queues.items():
            if name == queue_name:
                return tier
        return None


# Variables that must be set explicitly in production: the embedded/dev defaults for
# these would be insecure or point at nothing.
PRODUCTION_REQUIRED = (
    "SECRET_KEY",
    "INTERNAL_WORKER_TOKEN",
    "SITE_URL",
    "R2_ACCESS_KEY",
    "R2_SECRET_KEY",
    "R2_ENDPOINT",
    "CDN_HLS_SIGNING_SECRET",
)

DEV_SECRET = "dev-insecure-secret-key-change-me-0123456789"


IDLE_STOP_MODES = ("ec2", "exit", "off")
EC2_METADATA = "http://169.254.169.254"


def _idle_stop_mode() -> str:
    # Off unless asked: "ec2" on a container host would stop the whole instance.
    mode = _env("IDLE_STOP_MODE", "off").lower()
    if mode not in IDLE_STOP_MODES:
        raise SettingsError(f"IDLE_STOP_MODE must be one of {IDLE_STOP_MODES}, got {mode!r}")
    return mode


def _max_fps() -> int:
    fps = _int("VIDEO_MAX_FPS", 30)
    if fps not in (30, 60):
        raise SettingsError(f"VIDEO_MAX_FPS must be 30 or 60, got {fps}")
    return fps


def load_settings() -> Settings:
    """Read the environment; raise ``SettingsError`` naming the first bad variable.

    The parts are read in this order, each checking its own variables, so the first bad
    variable named is always the same one."""
    environment = _environment()
    queues = _queue_settings()
    return Settings(
        environment=environment,
        **_core_settings(environment),
        **queues,
        **_storage_settings(),
        **_worker_settings(),
        **_account_and_runtime_settings(),
        **_messaging_settings(environment),
        **_upload_settings(),
        **_cors_settings(),
    )


def _environment() -> str:
    """ACADEMY_ENV, and in production every variable that has no safe default."""
    environment = _env("ACADEMY_ENV", "development").lower()
    if environment not in ENVIRONMENTS:
        raise SettingsError(f"ACADEMY_ENV must be one of {ENVIRONMENTS}, got {environment!r}")

    if environment == "production":
        missing = [name for name in PRODUCTION_REQUIRED if not _env(name)]
        if not _database_url():
            missing.insert(0, "DATABASE_URL (or DB_NAME/DB_USER/DB_PASSWORD/DB_HOST/DB_PORT)")
        if missing:
            raise SettingsError("missing required production setting(s): " + ", ".join(missing))
        if len(_env("SECRET_KEY")) < 32:
            raise SettingsError("SECRET_KEY must be at least 32 characters in production")
    return environment


def _queue_settings() -> dict[str, Any]:
    """The tier queues, their visibility timeouts and the long-poll wait, within SQS limits."""
    queues = {tier: _env(var, default) for tier, (var, default) in TIER_QUEUE_ENV.items()}
    visibility = {
        tier: _int(f"SQS_VISIBILITY_TIMEOUT_{tier.upper().replace('-', '_')}", seconds)
        for tier, seconds in DEFAULT_VISIBILITY.items()
    }
    wait = _int("SQS_WAIT_TIME_SECONDS", 20)
    if not 0 <= wait <= 20:
        raise SettingsError(f"SQS_WAIT_TIME_SECONDS must be within 0..20, got {wait}")
    for tier, seconds in visibility.items():
        if not 2 <= seconds <= 43_200:
            raise SettingsError(
                f"SQS_VISIBILITY_TIMEOUT_{tier.upper().replace('-', '_')} must be within "
                f"2..43200 seconds, got {seconds}"
            )
    return {"queues": queues, "visibility_timeouts": visibility, "sqs_wait_time_seconds": wait}


def _core_settings(environment: str) -> dict[str, Any]:
    return {
        "debug": _bool("DEBUG", environment == "development"),
        "secret_key": _env("SECRET_KEY") or DEV_SECRET,
        "site_url": _env("SITE_URL", "http://127.0.0.1:8000"),
        "internal_worker_token": _env("INTERNAL_WORKER_TOKEN", "dev-internal-token"),
        "database_url": _database_url(),
        "database_direct_url": _env("DATABASE_DIRECT_URL"),
        # A direct URL beside DATABASE_URL means DATABASE_URL goes through a pooler.
        "database_pooled": _bool("DATABASE_POOLED", bool(_env("DATABASE_DIRECT_URL"))),
        "aws_region": _env("AWS_REGION", "ap-northeast-2"),
        "sqs_endpoint_url": _env("SQS_ENDPOINT_URL"),
        "sqs_max_receive_count": _int("SQS_MAX_RECEIVE_COUNT", 5),
    }


def _storage_settings() -> dict[str, Any]:
    """R2 (or any S3) and the CDN that serves HLS."""
    return {
        "r2_access_key": _env("R2_ACCESS_KEY"),
        "r2_secret_key": _env("R2_SECRET_KEY"),
        "r2_endpoint": _env("R2_ENDPOINT"),
        "r2_public_base_url": _env("R2_PUBLIC_BASE_URL"),
        "r2_region": _env("R2_REGION", "auto"),
        "r2_prefix": _env("R2_PREFIX").strip("/"),
        "r2_ai_bucket": _env("R2_AI_BUCKET", "academy-ai"),
        "r2_video_bucket": _env("R2_VIDEO_BUCKET", "academy-video"),
        "r2_excel_bucket": _env("R2_EXCEL_BUCKET", "academy-excel"),
        "r2_storage_bucket": _env("R2_STORAGE_BUCKET", "academy-storage"),
        "cdn_hls_base_url": _env("CDN_HLS_BASE_URL"),
        "cdn_hls_signing_secret": _env("CDN_HLS_SIGNING_SECRET") or DEV_SECRET,
        "cdn_hls_signing_key_id": _env("CDN_HLS_SIGNING_KEY_ID", "dev"),
    }


def _worker_settings() -> dict[str, Any]:
    """Worker hosts and the video pipeline."""
    return {
        "ec2_idle_stop_threshold": _int("EC2_IDLE_STOP_THRESHOLD", 5),
        "ai_worker_basic_poll_weight": _int("AI_WORKER_BASIC_POLL_WEIGHT", 3),
        "ai_worker_lite_poll_weight": _int("AI_WORKER_LITE_POLL_WEIGHT", 1),
        "video_worker_id": _env("VIDEO_WORKER_ID"),
        "hls_time_seconds": _int("HLS_TIME_SECONDS", 6),
        "min_segments_per_variant": _int("MIN_SEGMENTS_PER_VARIANT", 3),
        "thumbnail_at_seconds": _float("THUMBNAIL_AT_SECONDS", 5.0),
        "upload_max_concurrency": _int("UPLOAD_MAX_CONCURRENCY", 4),
        "api_processes": _positive("API_PROCESSES", 1),
        "worker_processes": _positive("WORKER_PROCESSES", 1),
        "retry_max_attempts": _int("RETRY_MAX_ATTEMPTS", 5),
        "backoff_base_seconds": _float("BACKOFF_BASE_SECONDS", 0.5),
        "backoff_cap_seconds": _float("BACKOFF_CAP_SECONDS", 10.0),
        "video_worker_temp_dir": _env("VIDEO_WORKER_TEMP_DIR"),
    }


PASSWORD_HASH_PROFILES = ("RFC_9106_LOW_MEMORY", "RFC_9106_HIGH_MEMORY", "CHEAPEST")


def _password_hash_profile() -> str:
    """PASSWORD_HASH_PROFILE: an argon2-cffi profile for new password hashes (a stored
    hash carries its own parameters, so verifying never depends on it). CHEAPEST is for
    the test suite only, where hashing at 64 MiB a password was minutes of every run."""
    raw = _env("PASSWORD_HASH_PROFILE", "RFC_9106_LOW_MEMORY")
    profile = raw.upper()
    if profile not in PASSWORD_HASH_PROFILES:
        raise SettingsError(
            f"PASSWORD_HASH_PROFILE must be one of {PASSWORD_HASH_PROFILES}, got {raw!r}"
        )
    if profile == "CHEAPEST" and _env("ACADEMY_ENV", "development").lower() != "test":
        raise SettingsError("PASSWORD_HASH_PROFILE=CHEAPEST is only for ACADEMY_ENV=test")
    return profile


def _account_and_runtime_settings() -> dict[str, Any]:
    """Tokens and log-in limits, jobs, logging, Excel limits, idle shutdown, metrics."""
    return {
        "access_token_ttl_seconds": _int("ACCESS_TOKEN_TTL_SECONDS", 900),
        "refresh_token_ttl_seconds": _int("REFRESH_TOKEN_TTL_SECONDS", 14 * 86400),
        "login_max_failures_per_account": _int("LOGIN_MAX_FAILURES_PER_ACCOUNT", 5),
        "login_max_failures_per_account_global": _int("LOGIN_MAX_FAILURES_PER_ACCOUNT_GLOBAL", 50),
        "login_max_attempts_per_client": _int("LOGIN_MAX_ATTEMPTS_PER_CLIENT", 30),
        "password_hash_profile": _password_hash_profile(),
        "login_window_seconds": _int("LOGIN_WINDOW_SECONDS", 900),
        "job_sweep_after_seconds": _int("JOB_SWEEP_AFTER_SECONDS", 300),
        "job_lifeline_margin_seconds": _int("JOB_LIFELINE_MARGIN_SECONDS", 300),
        "job_lifeline_max_resends": _int("JOB_LIFELINE_MAX_RESENDS", 3),
        "job_events_heartbeat_seconds": _float("JOB_EVENTS_HEARTBEAT_SECONDS", 15.0),
        "log_level": _env("LOG_LEVEL", "INFO").upper(),
        "extra_actor_modules": _csv("ACADEMY_EXTRA_ACTOR_MODULES"),
        "excel_max_upload_bytes": _int("EXCEL_MAX_UPLOAD_BYTES", 20 * 1024 * 1024),
        "excel_max_rows": _int("EXCEL_MAX_ROWS", 200_000),
        **_archive_settings(),
        "idle_stop_mode": _idle_stop_mode(),
        "ec2_metadata_endpoint": _env("EC2_METADATA_ENDPOINT", EC2_METADATA).rstrip("/"),
        "ec2_endpoint_url": _env("EC2_ENDPOINT_URL"),
        "metrics_token": _env("METRICS_TOKEN"),
        "forwarded_allow_ips": _csv("FORWARDED_ALLOW_IPS"),
        "metrics_queue_refresh_seconds": _float("METRICS_QUEUE_REFRESH_SECONDS", 10.0),
        "worker_metrics_port": _int("WORKER_METRICS_PORT", 0),
        "worker_metrics_host": _env("WORKER_METRICS_HOST", "127.0.0.1"),
    }


def _archive_settings() -> dict[str, Any]:
    """What an uploaded workbook may unpack to, and what a worker process may use."""
    receives = _int("JOB_MAX_RECEIVES", 3)
    most = _int("SQS_MAX_RECEIVE_COUNT", 5)
    if not 2 <= receives <= most:
        raise SettingsError(
            f"JOB_MAX_RECEIVES must be within 2..SQS_MAX_RECEIVE_COUNT ({most}), got {receives}"
        )
    return {
        "excel_max_uncompressed_bytes": _int("EXCEL_MAX_UNCOMPRESSED_BYTES", 256 * 1024**2),
        "excel_max_member_bytes": _int("EXCEL_MAX_MEMBER_BYTES", 128 * 1024**2),
        "excel_max_shared_strings_bytes": _int("EXCEL_MAX_SHARED_STRINGS_BYTES", 64 * 1024**2),
        "excel_max_cell_bytes": _int("EXCEL_MAX_CELL_BYTES", 128 * 1024),
        "excel_max_compression_ratio": _float("EXCEL_MAX_COMPRESSION_RATIO", 100.0),
        "worker_memory_limit_mb": _int("WORKER_MEMORY_LIMIT_MB", 3072),
        "job_max_receives": receives,
    }


def _messaging_settings(environment: str) -> dict[str, Any]:
    return {
        "messaging_provider": _env(
            "MESSAGING_PROVIDER", "" if environment == "production" else "console"
        ).lower(),
        "messaging_credentials_keys": _csv("MESSAGING_CREDENTIALS_KEYS"),
        "solapi_base_url": _env("SOLAPI_BASE_URL", "https://api.solapi.com").rstrip("/"),
        "messaging_http_timeout_seconds": _float("MESSAGING_HTTP_TIMEOUT_SECONDS", 10.0),
        "messaging_send_lease_seconds": _int("MESSAGING_SEND_LEASE_SECONDS", 60),
        "messaging_batch_size": _int("MESSAGING_BATCH_SIZE", 100),
        "messaging_rate_per_second": _float("MESSAGING_RATE_PER_SECOND", 50.0),
        "messaging_poll_delay_seconds": _int("MESSAGING_POLL_DELAY_SECONDS", 60),
        "messaging_outbox_poll_seconds": _float("MESSAGING_OUTBOX_POLL_SECONDS", 5.0),
        "messaging_console_outbox": _env("MESSAGING_CONSOLE_OUTBOX"),
    }


def _upload_settings() -> dict[str, Any]:
    """OMR and video: tiers and the largest uploads accepted."""
    return {
        "omr_tier": _env("OMR_TIER"),
        "omr_lite_max_pages": _int("OMR_LITE_MAX_PAGES", 3),
        "omr_max_upload_bytes": _int("OMR_MAX_UPLOAD_BYTES", 100 * 1024 * 1024),
        "video_max_upload_bytes": _int("VIDEO_MAX_UPLOAD_BYTES", 20 * 1024**3),
        "video_multipart_threshold_bytes": _int("VIDEO_MULTIPART_THRESHOLD_BYTES", 256 * 1024**2),
        "video_multipart_part_bytes": _int("VIDEO_MULTIPART_PART_BYTES", 64 * 1024**2),
        "video_completion_percent": _float("VIDEO_COMPLETION_PERCENT", 90.0),
        "video_raw_retention_days": _int("VIDEO_RAW_RETENTION_DAYS", 30),
        "video_max_fps": _max_fps(),
        "video_max_duration_seconds": _int("VIDEO_MAX_DURATION_SECONDS", 6 * 3600),
    }


# What a browser sends as ``Origin``: a scheme, a host and maybe a port, nothing after.
_ORIGIN = re.compile(r"^[a-z][a-z0-9+.-]*://[^/?#\s]+$")


def _cors_settings() -> dict[str, Any]:
    """The origins allowed to call the API from a browser, checked so that a typo cannot
    silently block every call (a path or trailing slash never matches an ``Origin``) and
    so that no configuration lets any site make credentialed calls."""
    origins = _csv("CORS_ALLOWED_ORIGINS")
    credentials = _bool("CORS_ALLOW_CREDENTIALS")
    for origin in origins:
        if origin != "*" and not _ORIGIN.match(origin):
            raise SettingsError(
                "CORS_ALLOWED_ORIGINS must list origins like https://app.example.com "
                f"(scheme, host, optional port; no path or trailing slash), got {origin!r}"
            )
    if credentials and any("*" in origin for origin in origins):
        raise SettingsError(
            "CORS_ALLOW_CREDENTIALS=true cannot be combined with a wildcard in "
            "CORS_ALLOWED_ORIGINS: list the exact origins"
        )
    max_age = _int("CORS_MAX_AGE_SECONDS", 600)
    if max_age < 0:
        raise SettingsError(f"CORS_MAX_AGE_SECONDS must be 0 or more, got {max_age}")
    return {
        "cors_allowed_origins": origins,
        "cors_allow_credentials": credentials,
        "cors_max_age_seconds": max_age,
    }


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
