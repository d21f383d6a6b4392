"""The @job decorator and actor binding, on Dramatiq's StubBroker."""

from __future__ import annotations

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker

from actors.broker import MAX_BACKOFF_MS, build_middleware, setup_broker
from actors.jobs import bind_actors, job, registered


@pytest.fixture
def stub_broker():
    previous = dramatiq.broker.global_broker
    broker = setup_broker(StubBroker(middleware=build_middleware(worker=False)))
    yield broker
    if previous is not None:
        dramatiq.set_broker(previous)


def test_actors_take_async_functions_only():
    with pytest.raises(TypeError, match="async"):

        @job("unit.sync", tier="video")
        def sync_fn(job_id: str) -> None:  # pragma: no cover
            pass


def test_unknown_tier_fails_fast():
    from ops.settings import SettingsError

    with pytest.raises(SettingsError, match="unknown worker tier"):
        job("unit.bad_tier", tier="gpu-please")


def test_backoff_is_capped_at_the_sqs_delay_limit(stub_broker):
    @job("unit.long_backoff", tier="messaging", max_backoff_ms=7 * 24 * 3600 * 1000)
    async def long_backoff(job_id: str) -> None:
        pass

    bind_actors(stub_broker)
    actor = stub_broker.get_actor("unit.long_backoff")
    assert actor.options["max_backoff"] == MAX_BACKOFF_MS == 900_000
    assert actor.queue_name == "academy-messaging-jobs"


def test_send_puts_a_small_message_on_the_tier_queue(stub_broker):
    from actors.system import PROBES

    PROBES["ai-basic"].send(job_id="j-1", request_id="r-1")
    messages = list(stub_broker.queues["academy-ai-jobs-basic"].queue)
    assert len(messages) == 1
    message = dramatiq.Message.decode(messages[0])
    assert message.actor_name == "system.probe_ai_basic"
    assert message.kwargs == {"job_id": "j-1", "request_id": "r-1"}
    assert message.args == ()


def test_every_tier_has_a_probe_on_its_seed_queue(stub_broker):
    names = {a.name: a for a in registered().values()}
    expected = {
        "system.probe_video": "academy-video-jobs",
        "system.probe_ai_lite": "academy-ai-jobs-lite",
        "system.probe_ai_basic": "academy-ai-jobs-basic",
        "system.probe_ai_premium": "academy-ai-jobs-premium",
        "system.probe_messaging": "academy-messaging-jobs",
    }
    for name, queue in expected.items():
        assert names[name].queue_name == queue
        assert stub_broker.get_actor(name).queue_name == queue


async def test_request_id_is_bound_and_not_passed_to_the_function():
    seen = {}

    @job("unit.sees_context", tier="video")
    async def sees_context(job_id: str) -> None:
        from ops.logging import current_context

        seen.update(current_context())

    await sees_context(job_id="j-2", request_id="r-2")
    assert seen["job_id"] == "j-2" and seen["request_id"] == "r-2"
    assert seen["actor"] == "unit.sees_context"
