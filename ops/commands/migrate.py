"""Apply Piccolo migrations (``just migrate``).

They run on the direct connection (``DATABASE_DIRECT_URL``) when ``DATABASE_URL`` is a
pooler: DDL that takes locks across statements, and the migration runner's own
bookkeeping, must not be split across server connections by transaction pooling.
"""

from __future__ import annotations

import asyncio
import os
import sys

from models.db import configure_db, direct_dsn, ensure_configured


async def migrate() -> None:
    os.environ.setdefault("PICCOLO_CONF", "models.piccolo_conf")
    from piccolo.apps.migrations.commands.forwards import run_forwards

    engine = ensure_configured()
    kept = engine.config
    direct = direct_dsn()
    if direct:
        configure_db(direct, pooled=False)
    try:
        response = await run_forwards(app_name="all", migration_id="all", fake=False)
    finally:
        # The process goes on with the connection it was configured with.
        engine.config = kept
    if not response.success:
        raise RuntimeError(f"migrations failed: {response.message}")


def main() -> int:
    asyncio.run(migrate())
    return 0


if __name__ == "__main__":
    sys.exit(main())
