"""Piccolo CLI configuration (``PICCOLO_CONF=models.piccolo_conf``)."""

from piccolo.conf.apps import AppRegistry

from models.db import configure_db

DB = configure_db()

APP_REGISTRY = AppRegistry(apps=["models.piccolo_app"])
