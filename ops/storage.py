"""S3-compatible object storage (Cloudflare R2 in production, a local server in dev)."""

from __future__ import annotations

import datetime as dt
import urllib.parse
from functools import lru_cache
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from ops.settings import Settings, get_settings


def s3_client(settings: Settings | None = None) -> Any:
    """A boto3 S3 client for R2.

    boto3 >= 1.36 sends CRC checksums by default, which R2 rejects on some calls;
    ``when_required`` restores the old behaviour. Path-style addressing works for both
    R2 and local servers without wildcard DNS.
    """
    s = settings or get_settings()
    config = Config(
        region_name=s.r2_region,
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        retries={"max_attempts": 5, "mode": "standard"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        connect_timeout=5,
        read_timeout=60,
    )
    return boto3.client(
        "s3",
        endpoint_url=s.r2_endpoint or None,
        aws_access_key_id=s.r2_access_key or None,
        aws_secret_access_key=s.r2_secret_key or None,
        config=config,
    )


@lru_cache(maxsize=4)
def _cached_client(settings: Settings) -> Any:
    return s3_client(settings)


def client() -> Any:
    """The process-wide client (boto3 clients are thread-safe)."""
    return _cached_client(get_settings())


def object_key(*parts: str, settings: Settings | None = None) -> str:
    """Join key parts under ``R2_PREFIX`` (if any)."""
    s = settings or get_settings()
    clean = [p.strip("/") for p in parts if p and p.strip("/")]
    return "/".join([s.r2_prefix, *clean]) if s.r2_prefix else "/".join(clean)


def presigned_get(bucket: str, key: str, expires: int = 900, **params: Any) -> str:
    return str(
        client().generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key, **params}, ExpiresIn=expires
        )
    )


def presigned_put(
    bucket: str, key: str, expires: int = 900, content_type: str | None = None
) -> str:
    params: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if content_type:
        params["ContentType"] = content_type
    return str(client().generate_presigned_url("put_object", Params=params, ExpiresIn=expires))


def head(bucket: str, key: str) -> dict[str, Any] | None:
    """Object metadata, or None when it does not exist."""
    try:
        return dict(client().head_object(Bucket=bucket, Key=key))
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


def put_bytes(bucket: str, key: str, data: bytes, content_type: str | None = None) -> None:
    extra = {"ContentType": content_type} if content_type else {}
    client().put_object(Bucket=bucket, Key=key, Body=data, **extra)


def get_bytes(bucket: str, key: str) -> bytes:
    return bytes(client().get_object(Bucket=bucket, Key=key)["Body"].read())


def delete(bucket: str, key: str) -> None:
    client().delete_object(Bucket=bucket, Key=key)


def delete_under(
    bucket: str,
    prefix: str,
    *,
    older_than: dt.datetime | None = None,
    dry_run: bool = False,
    s3: Any = None,
) -> int:
    """Delete every object under ``prefix`` (last modified before ``older_than``, if given).

    Returns how many matched; ``dry_run`` only counts. Blocking: call it from a thread in
    async code. A prefix with nothing under it is no error.
    """
    s3 = s3 or client()
    doomed: list[dict[str, str]] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        doomed += [
            {"Key": o["Key"]}
            for o in page.get("Contents", [])
            if older_than is None or o["LastModified"] < older_than
        ]
    if not dry_run:
        for start in range(0, len(doomed), 1000):  # DeleteObjects takes 1,000 keys
            s3.delete_objects(
                Bucket=bucket, Delete={"Objects": doomed[start : start + 1000], "Quiet": True}
            )
    return len(doomed)


# --- Excel import and exports (the Excel bucket) ------------------------------------------
# An upload and the import's work files share one prefix, ``imports/{tenant}/{upload}/``;
# exports (and error workbooks) are ``exports/{tenant}/{job}_{filename}``.


def excel_upload_key(tenant_id: Any, upload_id: Any, file_type: str) -> str:
    """Where the API stores an upload; the import's work files go next to it."""
    return object_key("imports", str(tenant_id), str(upload_id), f"upload.{file_type}")


def excel_work_prefix(input_key: str) -> str:
    """The prefix of an import's upload and work files (with its trailing slash)."""
    return input_key.rsplit("/", 1)[0] + "/"


def excel_work_key(input_key: str, name: str) -> str:
    """A work file of the import whose upload is ``input_key``."""
    return excel_work_prefix(input_key) + name


def excel_export_key(tenant_id: Any, job_id: Any, filename: str) -> str:
    return object_key("exports", str(tenant_id), f"{job_id}_{filename}")


def presigned_download(
    bucket: str, key: str, filename: str, *, content_type: str, expires: int = 900
) -> str:
    """A GET link (to an export, an error workbook) that saves under ``filename``
    (RFC 6266/5987: Hangul names survive)."""
    quoted = urllib.parse.quote(filename)
    return presigned_get(
        bucket,
        key,
        expires=expires,
        ResponseContentDisposition=f"attachment; filename*=UTF-8''{quoted}",
        ResponseContentType=content_type,
    )


# --- OMR grading: the keys of a scan batch's files (inputs, page images, annotated sheets)


def page_key(tenant_id: Any, batch_id: Any, name: str) -> str:
    """The key of ``name`` (``input/1-a.jpg``, ``pages/3.png``, ``annotated/<page>.png``)
    under the scan batch's folder."""
    return object_key("omr", str(tenant_id), str(batch_id), name)


# --- lecture videos: keys in R2_VIDEO_BUCKET ---------------------------------------------


def raw_key(tenant_id: Any, video_id: Any, filename: str = "") -> str:
    """The source's key: the tenant's raw prefix in ``R2_VIDEO_BUCKET``."""
    suffix = Path(filename).suffix.lower()[:8] if filename else ""
    return object_key("raw", str(tenant_id), str(video_id), f"source{suffix}")


def hls_prefix(tenant_id: Any, video_id: Any) -> str:
    return object_key("hls", str(tenant_id), str(video_id))


def delete_video_objects(tenant_id: Any, video_id: Any, *, hls: str | None, raw: str | None) -> int:
    """Delete a video's HLS prefix (``hls``, or where it would be) and its source (``raw``;
    None once the source is gone). Returns how many objects went. Blocking."""
    bucket = get_settings().r2_video_bucket
    prefix = hls or hls_prefix(tenant_id, video_id)
    deleted = delete_under(bucket, prefix.rstrip("/") + "/")
    if raw is not None:
        delete(bucket, raw)
        deleted += 1
    return deleted
