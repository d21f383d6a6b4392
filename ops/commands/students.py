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
from dataclasses import dataclass

from models.db import connection, transaction

PURGE_AFTER_DAYS = 30


@dataclass(frozen=True)
class DuplicateGroup:
    tenant: uuid.UUID
    name: str
    guardian_phone: str
    keep: uuid.UUID
    remove: tuple[uuid.UUID, ...]


async def find_deleted_duplicates(tenant_id: uuid.UUID | None = None) -> list[DuplicateGroup]:
    """Groups of deleted students sharing tenant + name + a guardian phone (all tenants if
    ``tenant_id`` is None). A student in two groups (two guardians) is kept or removed once."""
    async with connection() as conn:
        rows = await conn.fetch(
            """
            SELECT s.tenant, s.name, g.phone,
                   array_agg(s.id ORDER BY s.deleted_at, s.created_at, s.id) AS ids
            FROM student s
            JOIN student_guardian sg ON sg.student = s.id
            JOIN guardian g ON g.id = sg.guardian
            WHERE s.deleted_at IS NOT NULL AND ($1::uuid IS NULL OR s.tenant = $1)
            GROUP BY s.tenant, s.name, g.phone
            HAVING count(DISTINCT s.id) > 1
            ORDER BY s.tenant, s.name, g.phone
            """,
            tenant_id,
        )
    groups: list[DuplicateGroup] = []
    removed: set[uuid.UUID] = set()
    for row in rows:
        ids = [i for i in dict.fromkeys(row["ids"]) if i not in removed]
        if len(ids) < 2:
            continue
        keep, rest = ids[0], tuple(ids[1:])
        removed.update(rest)
        groups.append(DuplicateGroup(row["tenant"], row["name"], row["phone"], keep, rest))
    return groups


async def fix_deleted_duplicates(tenant_id: uuid.UUID | None = None) -> list[DuplicateGroup]:
    async with transaction():
        groups = await find_deleted_duplicates(tenant_id)
        ids = [i for g in groups for i in g.remove]
        if ids:
            async with connection() as conn:
                # Only still-deleted rows: a restore that raced us wins.
                await conn.execute(
                    "DELETE FROM student WHERE id = ANY($1::uuid[]) AND deleted_at IS NOT NULL", ids
                )
    return groups


async def purge_deleted(older_than_days: int = PURGE_AFTER_DAYS, dry_run: bool = False) -> int:
    async with transaction(), connection() as conn:
        sql = (
            "FROM student WHERE deleted_at IS NOT NULL "
            "AND deleted_at < now() - make_interval(days => $1)"
        )
        if dry_run:
            return int(await conn.fetchval(f"SELECT count(*) {sql}", older_than_days))
        result = await conn.execute(f"DELETE {sql}", older_than_days)
        return int(result.split()[-1])


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
