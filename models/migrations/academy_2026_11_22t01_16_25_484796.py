from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import Integer
from piccolo.columns.column_types import JSONB
from piccolo.columns.indexes import IndexMethod

ID = "2026-11-22T01:16:25:484796"
VERSION = "1.38.0"
DESCRIPTION = "student read model columns"


async def forwards():
    manager = MigrationManager(
        migration_id=ID, app_name="academy", description=DESCRIPTION
    )

    manager.add_column(
        table_class_name="Student",
        tablename="student",
        column_name="enrollment_count",
        db_column_name="enrollment_count",
        column_class_name="Integer",
        column_class=Integer,
        params={
            "default": 0,
            "null": False,
            "primary_key": False,
            "unique": False,
            "index": False,
            "index_method": IndexMethod.btree,
            "choices": None,
            "db_column_name": None,
            "secret": False,
        },
        schema=None,
    )

    manager.add_column(
        table_class_name="Student",
        tablename="student",
        column_name="guardians_json",
        db_column_name="guardians_json",
        column_class_name="JSONB",
        column_class=JSONB,
        params={
            "default": "[]",
            "null": False,
            "primary_key": False,
            "unique": False,
            "index": False,
            "index_method": IndexMethod.btree,
            "choices": None,
            "db_column_name": None,
            "secret": False,
        },
        schema=None,
    )

    return manager
