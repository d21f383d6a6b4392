"""Commands: the entry points (``python -m ops.commands.<name>``, wrapped by ``just``).

A command imports whatever it needs (models, actors, pipelines) at the top of its module.
Nothing in the base of ``ops`` imports a command; commands may import one another.
"""
