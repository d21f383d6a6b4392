"""Stopping the instance: IMDSv2 then ec2.stop_instances, against a fake instance metadata
service and a fake EC2 API, both real HTTP servers on 127.0.0.1.

``FakeAws`` is reused by the end-to-end idle tests (a real worker process calls it).
"""

from __future__ import annotations

import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from ops.idle import stop_this_instance
from ops.settings import SettingsError, get_settings, load_settings

INSTANCE_ID = "i-0123456789abcdef0"
REGION = "ap-northeast-2"
TOKEN = "fake-imds-session-token"

STOP_RESPONSE = f"""<?xml version="1.0" encoding="UTF-8"?>
<StopInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
  <requestId>5b2c6a3e-0000-4000-8000-000000000001</requestId>
  <instancesSet><item>
    <instanceId>{INSTANCE_ID}</instanceId>
    <currentState><code>64</code><name>stopping</name></currentState>
    <previousState><code>16</code><name>running</name></previousState>
  </item></instancesSet>
</StopInstancesResponse>"""


@dataclass
class Call:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, list[str]] = field(default_factory=dict)


class FakeAws:
    """An IMDSv2-only metadata service and an EC2 query API that records every call."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: str, ctype: str = "text/plain") -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _record(self, body: dict[str, list[str]] | None = None) -> None:
                with fake.lock:
                    fake.calls.append(
                        Call(
                            self.command,
                            self.path,
                            {k.lower(): v for k, v in self.headers.items()},
                            body or {},
                        )
                    )

            def do_PUT(self) -> None:
                self._record()
                if self.path == "/latest/api/token" and self.headers.get(
                    "X-aws-ec2-metadata-token-ttl-seconds"
                ):
                    self._reply(200, TOKEN)
                else:
                    self._reply(400, "bad token request")

            def do_GET(self) -> None:
                self._record()
                if self.headers.get("X-aws-ec2-metadata-token") != TOKEN:
                    self._reply(401, "IMDSv2 token required")
                elif self.path == "/latest/meta-data/instance-id":
                    self._reply(200, INSTANCE_ID)
                elif self.path == "/latest/meta-data/placement/region":
                    self._reply(200, REGION)
                else:
                    self._reply(404, "not found")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                self._record(form)
                if form.get("Action") == ["StopInstances"]:
                    self._reply(200, STOP_RESPONSE, "text/xml")
                else:
                    self._reply(400, "unsupported action")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeAws:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def env(self) -> dict[str, str]:
        """Environment for a process that should stop "its" instance through this fake."""
        return {
            "EC2_METADATA_ENDPOINT": self.url,
            "EC2_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": "fake-key",
            "AWS_SECRET_ACCESS_KEY": "fake-secret",
        }

    def summary(self) -> list[tuple[str, str]]:
        """The calls, in order, as (method, path or EC2 action)."""
        out = []
        for call in self.calls:
            action = call.body.get("Action", [""])[0]
            out.append((call.method, action or call.path))
        return out


EXPECTED_CALLS = [
    ("PUT", "/latest/api/token"),
    ("GET", "/latest/meta-data/instance-id"),
    ("GET", "/latest/meta-data/placement/region"),
    ("POST", "StopInstances"),
]


def assert_stopped_exactly_once(fake: FakeAws) -> None:
    assert fake.summary() == EXPECTED_CALLS
    token_put, instance_get, region_get, stop = fake.calls
    assert token_put.headers["x-aws-ec2-metadata-token-ttl-seconds"] == "60"
    assert instance_get.headers["x-aws-ec2-metadata-token"] == TOKEN
    assert region_get.headers["x-aws-ec2-metadata-token"] == TOKEN
    assert stop.body["InstanceId.1"] == [INSTANCE_ID]
    assert f"/{REGION}/ec2/aws4_request" in stop.headers["authorization"]


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
