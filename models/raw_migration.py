"""Migrations made of raw SQL statements (what Piccolo's auto-migrator cannot express:
partial and expression indexes, triggers, checks across tables)."""

from __future__ import annotations

from collections.abc import Sequence

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from models.db import DB


def raw_sql_manager(
    migration_id: str, description: str, forward: Sequence[str], backward: Sequence[str]
) -> MigrationManager:
    """A manager that runs ``forward`` in order, and ``backward`` to undo it."""
    manager = MigrationManager(
        migration_id=migration_id, app_name="academy", description=description
    )

    async def run() -> None:
        for statement in forward:
            await DB.run_ddl(statement)

    async def run_backwards() -> None:
        for statement in backward:
            await DB.run_ddl(statement)

    manager.add_raw(run)
    manager.add_raw_backwards(run_backwards)
    return manager
