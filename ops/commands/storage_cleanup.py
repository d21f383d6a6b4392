"""Expire Excel exports and abandoned import files: ``just storage-cleanup [--dry-run]``.

Provisioning sets a bucket lifecycle rule that does this where the storage supports one
(``ops.provision.ensure_lifecycle``); this command does the same job everywhere else. Run
it from cron (hourly keeps exports within about 25 h of their creation).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import Any

from actors.video import cleanup_raw_uploads_command
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
