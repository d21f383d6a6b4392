"""Stopping the instance: IMDSv2 then ec2.stop_instances, against a fake instance metadata
service and a fake EC2 API, both real HTTP servers on 127.0.0.1.

``FakeAws`` lives in tests/idle_helpers.py; the end-to-end idle tests reuse it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ops.idle import stop_this_instance
from ops.settings import SettingsError, get_settings, load_settings
from tests.idle_helpers import INSTANCE_ID, FakeAws, assert_stopped_exactly_once


@pytest.fixture
def fake_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAws]:
    with FakeAws() as fake:
        for key, value in fake.env().items():
            monkeypatch.setenv(key, value)
        get_settings.cache_clear()
        yield fake
    get_settings.cache_clear()


def test_stop_uses_imdsv2_then_stop_instances(fake_aws: FakeAws) -> None:
    assert stop_this_instance(load_settings()) == INSTANCE_ID
    assert_stopped_exactly_once(fake_aws)


def test_stop_fails_loudly_when_the_metadata_service_refuses(
    fake_aws: FakeAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A metadata service that does not know us: nothing may be stopped.
    monkeypatch.setenv("EC2_METADATA_ENDPOINT", fake_aws.url + "/nowhere")
    with pytest.raises(OSError):
        stop_this_instance(load_settings())
    assert all(call.method != "POST" for call in fake_aws.calls)


def test_idle_stop_mode_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDLE_STOP_MODE", "reboot")
    with pytest.raises(SettingsError, match="IDLE_STOP_MODE"):
        load_settings()
    for mode in ("ec2", "exit", "off", "EXIT"):
        monkeypatch.setenv("IDLE_STOP_MODE", mode)
        assert load_settings().idle_stop_mode == mode.lower()
