"""Expire Excel exports and abandoned import files: ``just storage-cleanup [--dry-run]``.

Provisioning sets a bucket lifecycle rule that does this where the storage supports one
(``ops.commands.provision.ensure_lifecycle``); this command does the same job everywhere else. Run
it from cron (hourly keeps exports within about 25 h of their creation).

It also deletes the sources of lecture videos ``VIDEO_RAW_RETENTION_DAYS`` after they
became READY (their HLS renditions stay).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from typing import Any

from models import videos
from models.db import configure_db
from ops import storage
from ops.settings import Settings, get_settings

# Exports (and import error workbooks) are links valid for 24 h: the files go with them.
EXPORT_TTL = dt.timedelta(hours=24)
# Work files of an import are deleted when it finishes; these are left by one that died.
IMPORT_TTL = dt.timedelta(days=7)


def expiring(settings: Settings) -> list[tuple[str, dt.timedelta]]:
    """(key prefix, age after which an object under it is deleted)."""
    return [
        (storage.object_key("exports", settings=settings) + "/", EXPORT_TTL),
        (storage.object_key("imports", settings=settings) + "/", IMPORT_TTL),
    ]


def cleanup(
    *, now: dt.datetime | None = None, dry_run: bool = False, client: Any = None
) -> dict[str, int]:
    """Delete the expired objects of the Excel bucket. Returns how many per prefix."""
    settings = get_settings()
    now = now or dt.datetime.now(dt.UTC)
    return {
        prefix: storage.delete_under(
            settings.r2_excel_bucket,
            prefix,
            older_than=now - ttl,
            dry_run=dry_run,
            s3=client,
        )
        for prefix, ttl in expiring(settings)
    }


async def cleanup_raw_uploads(
    *, older_than_days: int | None = None, dry_run: bool = False, limit: int = 1000
) -> dict[str, int]:
    """Delete the sources of videos READY for more than ``VIDEO_RAW_RETENTION_DAYS`` days
    (the HLS renditions stay). Returns counts; safe to repeat."""
    s = get_settings()
    days = s.video_raw_retention_days if older_than_days is None else older_than_days
    cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
    deleted = 0
    for source in await videos.sources_ready_before(cutoff, limit):
        if not dry_run:
            await asyncio.to_thread(storage.delete, s.r2_video_bucket, source.raw_key)
            await videos.mark_raw_deleted(source.id)
        deleted += 1
    return {"video_raw_deleted": deleted, "dry_run": int(dry_run)}


def cleanup_raw_uploads_command(*, dry_run: bool = False) -> str:
    """``just storage-cleanup``'s video part: run ``cleanup_raw_uploads`` in its own loop
    and say what it did."""
    configure_db()
    counts = asyncio.run(cleanup_raw_uploads(dry_run=dry_run))
    days = get_settings().video_raw_retention_days
    verb = "would delete" if dry_run else "deleted"
    return f"{verb} {counts['video_raw_deleted']} video source(s) of videos READY over {days} days"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="just storage-cleanup", description=__doc__)
    parser.add_argument("--dry-run", action="store_true", help="count, delete nothing")
    args = parser.parse_args(argv)
    for prefix, count in cleanup(dry_run=args.dry_run).items():
        verb = "would delete" if args.dry_run else "deleted"
        print(f"{verb} {count} object(s) under {get_settings().r2_excel_bucket}/{prefix}")
    # Video sources, VIDEO_RAW_RETENTION_DAYS after their video became READY.
    print(cleanup_raw_uploads_command(dry_run=args.dry_run))
    return 0


if __name__ == "__main__":
    sys.exit(main())
