"""Fakes and log readers shared by the idle-shutdown tests.

``FakeAws`` is an IMDSv2-only metadata service plus an EC2 query API, both real HTTP servers
on 127.0.0.1, so a real worker process can "stop its instance" against it. ``events`` /
``names`` / ``exited`` read a worker process's structured log output and exit.
"""

from __future__ import annotations

import json
import subprocess
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

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


def events(output: str) -> list[dict[str, Any]]:
    """The structured log records of a worker's output, in order."""
    out = []
    for line in output.splitlines():
        start = line.find("{")
        if start < 0:
            continue
        try:
            record = json.loads(line[start:])
        except ValueError:
            continue
        if isinstance(record, dict) and "event" in record:
            out.append(record)
    return out


def names(output: str) -> list[str]:
    return [e["event"] for e in events(output)]


def exited(proc: subprocess.Popen[bytes]) -> Any:
    async def check() -> int | None:
        return proc.poll() is not None

    return check
