"""The development provider: each message is logged (phone masked) and appended to a JSON
Lines outbox file, which is also what ``find`` and ``status`` read, so reconciliation
works the same as with a real provider. Nothing leaves the machine."""

from __future__ import annotations

import asyncio
import datetime as dt
import fcntl
import json
import logging
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ops.logging import log_event
from pipelines.messaging.providers.base import (
    DeliveryState,
    OutgoingMessage,
    Report,
    SendOutcome,
    mask_phone,
)

log = logging.getLogger("messaging.console")

ROOT = Path(__file__).resolve().parents[3]


def default_outbox() -> Path:
    return ROOT / ".data" / "messages-outbox.jsonl"


class ConsoleProvider:
    name = "console"
    max_batch = 1000

    def __init__(self, outbox: str | Path | None = None) -> None:
        self.path = Path(outbox) if outbox else default_outbox()

    async def aclose(self) -> None:
        return None

    def _append(self, lines: list[str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            # Several worker processes append: one lock per batch keeps lines whole.
            fcntl.flock(f, fcntl.LOCK_EX)
            f.write("".join(lines))
            f.flush()
            fcntl.flock(f, fcntl.LOCK_UN)

    def _read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        with self.path.open(encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]

    async def send(self, messages: Sequence[OutgoingMessage]) -> SendOutcome:
        outcome = SendOutcome()
        lines = []
        now = dt.datetime.now(dt.UTC).isoformat()
        for m in messages:
            pid = f"console-{uuid.uuid4().hex}"
            record = {
                "messageId": pid,
                "key": m.key,
                "type": m.channel.value,
                "to": m.to,
                "from": m.sender,
                "subject": m.subject,
                "text": m.text,
                "templateId": m.template_id,
                "at": now,
            }
            lines.append(json.dumps(record, ensure_ascii=False) + "\n")
            outcome.accepted[m.key] = Report(pid, DeliveryState.delivered, "console", "", m.key)
            log_event(
                log,
                "MESSAGE_CONSOLE",
                channel=m.channel.value,
                to=mask_phone(m.to),
                chars=len(m.text),
                provider_message_id=pid,
            )
        await asyncio.to_thread(self._append, lines)
        return outcome

    async def find(self, keys: Sequence[str], sender: str, since: dt.datetime) -> dict[str, Report]:
        wanted = set(keys)
        records = await asyncio.to_thread(self._read)
        return {
            r["key"]: Report(r["messageId"], DeliveryState.delivered, "console", "", r["key"])
            for r in records
            if r.get("key") in wanted
        }

    async def status(self, provider_message_ids: Sequence[str]) -> list[Report]:
        wanted = set(provider_message_ids)
        records = await asyncio.to_thread(self._read)
        return [
            Report(r["messageId"], DeliveryState.delivered, "console", "", r["key"])
            for r in records
            if r["messageId"] in wanted
        ]

    def parse_reports(self, payload: Any) -> list[Report]:
        return parse_reports(payload)


def parse_reports(payload: Any) -> list[Report]:
    if not isinstance(payload, list):
        raise ValueError("a report is a JSON list")
    out = []
    for entry in payload:
        if not isinstance(entry, dict) or not entry.get("messageId"):
            raise ValueError("each report needs messageId")
        out.append(
            Report(
                str(entry["messageId"]),
                DeliveryState(entry.get("state", "delivered")),
                str(entry.get("code", "")),
                str(entry.get("reason", "")),
            )
        )
    return out
