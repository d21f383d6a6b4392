"""Benchmarks run only through `just bench` (ACADEMY_BENCH=1). They print figures and
assert nothing about speed."""

import os

import pytest


def pytest_collection_modifyitems(config, items):
    if os.environ.get("ACADEMY_BENCH") == "1":
        return
    skip = pytest.mark.skip(reason="benchmarks run with `just bench`")
    for item in items:
        if "benchmarks" in str(item.fspath):
            item.add_marker(skip)
