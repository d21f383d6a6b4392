"""The module the ``dramatiq`` CLI loads: ``dramatiq actors.worker --queues ...``."""

from actors.broker import setup_broker
from ops.logging import configure_logging
from ops.settings import get_settings

configure_logging(get_settings().log_level)
broker = setup_broker(worker=True)
