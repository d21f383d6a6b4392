"""The queue sampler: when a /metrics scrape reads SQS, and when it serves the last reading."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest

from ops import metrics
from ops.settings import get_settings


@pytest.fixture
def reads(monkeypatch: Any) -> list[float]:
    """Every SQS reading the sampler makes (a stand-in for the ten GetQueueAttributes calls)."""
    made: list[float] = []

    def queue_stats(settings: Any, parallel: bool = True) -> list[metrics.QueueStats]:
        made.append(time.monotonic())
        return [metrics.QueueStats("video", "q", "queue", len(made), 0, 0, True)]

    monkeypatch.setattr(metrics, "queue_stats", queue_stats)
    return made


def _settings(refresh: float) -> Any:
    return dataclasses.replace(get_settings(), metrics_queue_refresh_seconds=refresh)


def _age(sampler: metrics.QueueSampler, seconds: float) -> None:
    assert sampler._reading is not None
    sampler._reading = (time.monotonic() - seconds, sampler._reading[1])


def _wait_for_background(sampler: metrics.QueueSampler) -> None:
    deadline = time.monotonic() + 10
    while sampler._refreshing and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not sampler._refreshing


async def test_a_fresh_reading_serves_the_next_scrapes(reads: list[float]) -> None:
    sampler, settings = metrics.QueueSampler(), _settings(10)
    first, age = await sampler.get(settings)
    assert len(reads) == 1 and first[0].visible == 1 and age < 5
    sampler.refresh_if_due(settings)
    again, _ = await sampler.get(settings)
    assert len(reads) == 1 and again == first and not sampler._refreshing


async def test_an_old_reading_is_served_and_renewed_after_the_scrape(reads: list[float]) -> None:
    sampler, settings = metrics.QueueSampler(), _settings(10)
    await sampler.get(settings)
    _age(sampler, 15)
    served, age = await sampler.get(settings)
    assert served[0].visible == 1 and age >= 15 and len(reads) == 1  # the old one, aged
    sampler.refresh_if_due(settings)
    _wait_for_background(sampler)
    assert len(reads) == 2
    fresh, age = await sampler.get(settings)
    assert fresh[0].visible == 2 and age < 5


async def test_only_one_background_reading_at_a_time(reads: list[float]) -> None:
    sampler, settings = metrics.QueueSampler(), _settings(10)
    await sampler.get(settings)
    _age(sampler, 15)
    for _ in range(5):
        await sampler.get(settings)
        sampler.refresh_if_due(settings)
    _wait_for_background(sampler)
    assert len(reads) == 2


async def test_a_stale_reading_is_not_served(reads: list[float]) -> None:
    sampler, settings = metrics.QueueSampler(), _settings(10)
    await sampler.get(settings)
    _age(sampler, 10 * metrics.STALE_FACTOR + 1)
    served, age = await sampler.get(settings)
    assert served[0].visible == 2 and age < 5 and len(reads) == 2


async def test_refresh_zero_reads_every_scrape(reads: list[float]) -> None:
    sampler, settings = metrics.QueueSampler(), _settings(0)
    for n in range(1, 4):
        served, _ = await sampler.get(settings)
        sampler.refresh_if_due(settings)
        assert served[0].visible == n
    assert len(reads) == 3 and not sampler._refreshing
