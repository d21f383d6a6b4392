"""Student maintenance, as the seed's ops guide describes.

* Deleted duplicates: soft-deleted students of one academy with the same name and the same
  guardian phone. ``--fix`` keeps the one deleted first (oldest ``deleted_at``) and deletes
  the rest for good.
* Purge: students soft-deleted more than 30 days ago are deleted for good (their
  enrollments, attendance and scores go with them; the audit log keeps its history).

``just students-duplicates [--fix]`` and ``just students-purge [--dry-run]``; schedule the
purge with cron (or any scheduler) running ``just students-purge`` daily.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid

from models.students import (
    PURGE_AFTER_DAYS,
    find_deleted_duplicates,
    fix_deleted_duplicates,
    purge_deleted,
)


def main_duplicates(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="just students-duplicates")
    parser.add_argument("--fix", action="store_true", help="delete the extras (default: dry run)")
    parser.add_argument("--tenant", type=uuid.UUID, help="one academy only")
    args = parser.parse_args(argv)
    fn = fix_deleted_duplicates if args.fix else find_deleted_duplicates
    groups = asyncio.run(fn(args.tenant))
    for g in groups:
        print(f"{g.tenant}  {g.name}  {g.guardian_phone}  keep {g.keep}  remove {len(g.remove)}")
    removable = sum(len(g.remove) for g in groups)
    verb = "deleted" if args.fix else "would delete (dry run; --fix to apply)"
    print(f"{len(groups)} group(s); {verb} {removable} student(s)")
    return 0


def main_purge(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="just students-purge")
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--days", type=int, default=PURGE_AFTER_DAYS)
    args = parser.parse_args(argv)
    count = asyncio.run(purge_deleted(args.days, args.dry_run))
    print(
        f"{'would purge' if args.dry_run else 'purged'} {count} student(s) deleted over {args.days} days ago"
    )
    return 0


if __name__ == "__main__":
    command, *rest = sys.argv[1:] or ["duplicates"]
    sys.exit(main_purge(rest) if command == "purge" else main_duplicates(rest))
