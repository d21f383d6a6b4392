"""A fake Solapi v4 server on 127.0.0.1 for tests and benchmarks (nothing reaches the real
service). It checks every request's HMAC-SHA256 signature on its own (not with our
signing code), keeps the messages it accepted, and can be told to fail, rate-limit, time
out after accepting, hold a response until released, or fail Alimtalk for some numbers.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import json
import os
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

API_KEY = "NCSFAKEKEY0000001"
API_SECRET = "fake-solapi-secret-0123456789abcdef"

_AUTH = re.compile(
    r"^HMAC-SHA256 ApiKey=(?P<key>[^,]+), Date=(?P<date>[^,]+), salt=(?P<salt>[^,]+), "
    r"signature=(?P<sig>[0-9a-f]{64})$"
)
KAKAO_NOT_USER = "3104"  # 카카오톡 미사용자


@dataclass
class Behaviour:
    """What the next requests meet. Counters count down per send request."""

    fail_next: int = 0  # 500 without accepting anything
    rate_limit_next: int = 0  # 429 with Retry-After
    retry_after: float = 0.2
    timeout_after_accept_next: int = 0  # accept, then answer after ``hang_seconds``
    hang_seconds: float = 5.0
    hold_after_accept: bool = False  # accept, then wait for ``release`` before answering
    kakao_fail_numbers: set[str] = field(default_factory=set)  # ATA fails after accepting
    reject_numbers: set[str] = field(default_factory=set)  # in failedMessageList at once


class FakeSolapi:
    def __init__(self, api_key: str = API_KEY, api_secret: str = API_SECRET) -> None:
        self.api_key = api_key
        self.api_secret = api_secret
        self.behaviour = Behaviour()
        self.lock = threading.Lock()
        self.messages: dict[str, dict[str, Any]] = {}
        self.requests: Counter[str] = Counter()
        self.auth_failures = 0
        self.accepted = threading.Event()  # set when a held request has been accepted
        self.release = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeSolapi:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeSolapi:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what tests look at ---

    def sends_by_key(self) -> Counter[str]:
        """How many accepted messages carry each idempotency key (duplicates show > 1)."""
        with self.lock:
            return Counter(
                (m.get("customFields") or {}).get("idempotencyKey", "")
                for m in self.messages.values()
            )

    def to(self, phone_digits: str) -> list[dict[str, Any]]:
        with self.lock:
            return [m for m in self.messages.values() if m["to"] == phone_digits]

    # --- the server ---

    def _check_auth(self, header: str) -> str | None:
        m = _AUTH.match(header or "")
        if m is None:
            return "InvalidAuthorization"
        if m["key"] != self.api_key:
            return "InvalidApiKey"
        try:
            date = dt.datetime.fromisoformat(m["date"])
        except ValueError:
            return "InvalidDate"
        if date.tzinfo is None or abs((dt.datetime.now(dt.UTC) - date).total_seconds()) > 900:
            return "RequestTimeTooSkewed"
        expected = hmac.new(
            self.api_secret.encode(), (m["date"] + m["salt"]).encode(), hashlib.sha256
        ).hexdigest()
        if not hmac.compare_digest(expected, m["sig"]):
            return "SignatureDoesNotMatch"
        return None

    def _status_now(self, m: dict[str, Any]) -> str:
        if m["type"] == "ATA" and m["to"] in self.behaviour.kakao_fail_numbers:
            return KAKAO_NOT_USER
        return "4000"

    def _send(self, body: dict[str, Any]) -> tuple[int, dict[str, Any], float, bool]:
        """(status, response, hang seconds, hold) for a send request."""
        b = self.behaviour
        with self.lock:
            if b.rate_limit_next > 0:
                b.rate_limit_next -= 1
                return 429, {"errorCode": "TooManyRequests"}, 0.0, False
            if b.fail_next > 0:
                b.fail_next -= 1
                return 500, {"errorCode": "InternalError"}, 0.0, False
            group = f"G4V{uuid.uuid4().hex[:20].upper()}"
            accepted, failed = [], []
            for raw in body.get("messages") or []:
                mid = f"M4V{uuid.uuid4().hex[:24].upper()}"
                record = {
                    "messageId": mid,
                    "groupId": group,
                    "to": raw["to"],
                    "from": raw["from"],
                    "type": raw["type"],
                    "text": raw["text"],
                    "subject": raw.get("subject", ""),
                    "kakaoOptions": raw.get("kakaoOptions"),
                    "customFields": raw.get("customFields") or {},
                    "statusCode": "2000",
                    "dateCreated": dt.datetime.now(dt.UTC).isoformat(),
                }
                if raw["to"] in b.reject_numbers:
                    failed.append({**record, "statusCode": "1062", "statusMessage": "rejected"})
                    continue
                self.messages[mid] = record
                accepted.append(record)
            hang, hold = 0.0, False
            if b.timeout_after_accept_next > 0:
                b.timeout_after_accept_next -= 1
                hang = b.hang_seconds
            if b.hold_after_accept:
                hold = True
        return (
            200,
            {
                "groupInfo": {"groupId": group, "count": {"total": len(accepted) + len(failed)}},
                "messageList": accepted,
                "failedMessageList": failed,
            },
            hang,
            hold,
        )

    def _list(self, query: dict[str, list[str]]) -> dict[str, Any]:
        with self.lock:
            items = list(self.messages.values())
            for m in items:
                m["statusCode"] = self._status_now(m)
        if "messageIds" in query:
            wanted = set(query["messageIds"])
            items = [m for m in items if m["messageId"] in wanted]
        if "from" in query:
            items = [m for m in items if m["from"] == query["from"][0]]
        if "startDate" in query:
            since = dt.datetime.fromisoformat(query["startDate"][0])
            items = [m for m in items if dt.datetime.fromisoformat(m["dateCreated"]) >= since]
        start = int(query.get("startKey", ["0"])[0])
        limit = int(query.get("limit", ["20"])[0])
        page = items[start : start + limit]
        next_key = str(start + limit) if start + limit < len(items) else None
        return {"messageList": {m["messageId"]: m for m in page}, "nextKey": next_key}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return None

            def _reply(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status == 429:
                    self.send_header("Retry-After", str(fake.behaviour.retry_after))
                self.end_headers()
                # The client may have given up (a timeout test).
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(data)

            def _authorised(self) -> bool:
                error = fake._check_auth(self.headers.get("Authorization", ""))
                if error is None:
                    return True
                with fake.lock:
                    fake.auth_failures += 1
                self._reply(401, {"errorCode": error, "errorMessage": "authentication failed"})
                return False

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if not self._authorised():
                    return
                if urlsplit(self.path).path != "/messages/v4/send-many/detail":
                    self._reply(404, {"errorCode": "NotFound"})
                    return
                with fake.lock:
                    fake.requests["send"] += 1
                status, payload, hang, hold = fake._send(json.loads(raw))
                if hold:
                    fake.accepted.set()
                    fake.release.wait(120)
                if hang:
                    time.sleep(hang)
                self._reply(status, payload)

            def do_GET(self) -> None:
                if not self._authorised():
                    return
                parts = urlsplit(self.path)
                if parts.path != "/messages/v4/list":
                    self._reply(404, {"errorCode": "NotFound"})
                    return
                with fake.lock:
                    fake.requests["list"] += 1
                self._reply(200, fake._list(parse_qs(parts.query)))

        return Handler


# --- wiring a test to the fake -----------------------------------------------------------


@contextlib.contextmanager
def running_fake(**env: str) -> Iterator[FakeSolapi]:
    """Start a fake and point this process's settings at it (restored afterwards). Short
    timeouts and lease so the timeout and reconciliation paths run in seconds."""
    from ops.settings import get_settings

    values = {
        "SOLAPI_BASE_URL": "",
        "MESSAGING_HTTP_TIMEOUT_SECONDS": "1",
        "MESSAGING_SEND_LEASE_SECONDS": "3",
        **env,
    }
    with FakeSolapi() as fake:
        values["SOLAPI_BASE_URL"] = fake.url
        saved = {k: os.environ.get(k) for k in values}
        os.environ.update(values)
        get_settings.cache_clear()
        try:
            yield fake
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            get_settings.cache_clear()


async def connect_tenant(
    tenant_id: Any,
    *,
    sender: str = "010-2000-0001",
    pf_id: str = "KA01PF-FAKE",
    api_secret: str = API_SECRET,
    **switches: bool,
) -> str:
    """The academy uses Solapi (credentials encrypted as the API stores them) with one
    registered sender number; returns the sender."""
    from models.db import connection
    from pipelines.messaging.credentials import Credentials, encrypt

    token = encrypt(Credentials({"api_key": API_KEY, "api_secret": api_secret}))
    async with connection() as conn:
        await conn.execute(
            """
            INSERT INTO messaging_config (id, tenant, provider, credentials, pf_id,
                opt_out_number, auto_absence, auto_late, auto_score, auto_video_reminder)
            VALUES (gen_random_uuid(), $1, 'solapi', $2, $3, '080-500-5000', $4, $5, $6, $7)
            ON CONFLICT (tenant) DO UPDATE SET provider = 'solapi', credentials = $2, pf_id = $3
            """,
            tenant_id,
            token,
            pf_id,
            switches.get("auto_absence", True),
            switches.get("auto_late", True),
            switches.get("auto_score", True),
            switches.get("auto_video_reminder", True),
        )
        await conn.execute(
            """
            INSERT INTO sender_number (id, tenant, phone, label, is_default)
            VALUES (gen_random_uuid(), $1, $2, '대표번호', true)
            ON CONFLICT (tenant, phone) DO NOTHING
            """,
            tenant_id,
            sender,
        )
    return sender
