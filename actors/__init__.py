"""Dramatiq actors: thin steps that load ids, call a pipeline, record progress, enqueue next.

Importing this package builds nothing; ``actors.broker.setup_broker()`` does, explicitly.
"""

# Modules whose @job actors are bound when the broker is set up. Later pipelines add theirs.
ACTOR_MODULES: tuple[str, ...] = (
    "actors.system",
    "actors.messaging",
    "actors.excel",
    "actors.excel_export",
    "actors.omr",
    "actors.video",
)
