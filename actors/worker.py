"""The module the ``dramatiq`` CLI loads: ``dramatiq actors.worker --queues ...``."""

from actors.broker import setup_broker
from ops.logging import configure_logging
from ops.processes import settle_heap
from ops.settings import get_settings

configure_logging(get_settings().log_level)
broker = setup_broker(worker=True)
# What the imports left alive (every actor module, Polars, the AWS clients' models) is put
# out of the collector's reach: the full collections of a 100,000-row import walked it
# again and again while its chunks waited on the event loop.
settle_heap()
