"""``python -m api.schema_file PATH``: write the OpenAPI document the API serves at
``/schema/openapi.json`` to PATH, asked of the application in-process, so ``just client``
has the schema when no API is running. Needs the settings the API needs (``DATABASE_URL``)
but opens no connection: the application is not started, only asked for one route."""

from __future__ import annotations

import sys
from pathlib import Path

from litestar.testing import TestClient

from api.app import create_app
from api.openapi import SCHEMA_PATH


def main(path: str) -> None:
    answer = TestClient(create_app()).get(f"{SCHEMA_PATH}/openapi.json")
    answer.raise_for_status()
    Path(path).write_bytes(answer.content)


if __name__ == "__main__":
    main(sys.argv[1])
