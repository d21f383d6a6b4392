"""Apply Piccolo migrations (``just migrate``)."""

from __future__ import annotations

import asyncio
import os
import sys

from models.db import ensure_configured


async def migrate() -> None:
    os.environ.setdefault("PICCOLO_CONF", "models.piccolo_conf")
    from piccolo.apps.migrations.commands.forwards import run_forwards

    ensure_configured()
    response = await run_forwards(app_name="all", migration_id="all", fake=False)
    if not response.success:
        raise RuntimeError(f"migrations failed: {response.message}")


def main() -> int:
    asyncio.run(migrate())
    return 0


if __name__ == "__main__":
    sys.exit(main())
