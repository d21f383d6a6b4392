"""Solapi (v4 REST API). Requests are signed per call (``signing.solapi_authorization``).

* Send: ``POST /messages/v4/send-many/detail`` with ``allowDuplicates: false``; each
  message carries our idempotency key in ``customFields.idempotencyKey`` (Solapi has no
  request idempotency key, so exactly-once rests on ``find``: a message we may have sent is
  looked up by that field before it is sent again).
* Alimtalk goes as type ``ATA`` with ``kakaoOptions`` (pfId, templateId, variables) and
  ``disableSms: true``: the SMS fallback is ours (its own idempotency key, row and status),
  not the provider's silent substitute.
* Status: ``GET /messages/v4/list``. ``statusCode`` 2000/3000 are in progress, 4000 is
  delivered, anything else failed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import httpx

from pipelines.korean import phone_digits
from pipelines.messaging.credentials import Credentials
from pipelines.messaging.providers.base import (
    DeliveryState,
    OutgoingMessage,
    ProviderRateLimited,
    ProviderRejectedRequest,
    ProviderUnavailable,
    ProviderUncertain,
    Report,
    SendOutcome,
)
from pipelines.messaging.signing import solapi_authorization
from pipelines.messaging.text import Channel

TYPES = {Channel.sms: "SMS", Channel.lms: "LMS", Channel.alimtalk: "ATA"}
PENDING_CODES = {"2000", "3000"}
DELIVERED_CODE = "4000"
LIST_PAGE = 500


def state_of(code: str) -> DeliveryState:
    if code in PENDING_CODES or not code:
        return DeliveryState.pending
    if code == DELIVERED_CODE:
        return DeliveryState.delivered
    return DeliveryState.failed


class SolapiProvider:
    name = "solapi"
    max_batch = 1000

    def __init__(self, credentials: Credentials, base_url: str, timeout: float) -> None:
        self._key = credentials.get("api_key")
        self._secret = credentials.get("api_secret")
        self._client = httpx.AsyncClient(base_url=base_url, timeout=timeout)

    def __repr__(self) -> str:
        return f"SolapiProvider({self._client.base_url})"

    async def aclose(self) -> None:
        await self._client.aclose()

    def _headers(self) -> dict[str, str]:
        return {"Authorization": solapi_authorization(self._key, self._secret)}

    async def _request(self, method: str, path: str, *, sends: bool, **kwargs: Any) -> Any:
        failure: str | None = None
        try:
            r = await self._client.request(method, path, headers=self._headers(), **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            # Nothing reached Solapi: safe to send again.
            raise ProviderUnavailable(f"Solapi unreachable: {type(exc).__name__}") from None
        except httpx.TimeoutException as exc:
            failure = f"Solapi did not answer in time ({type(exc).__name__})"
        except httpx.TransportError as exc:
            failure = f"the connection to Solapi broke ({type(exc).__name__})"
        if failure is not None:
            if sends:
                raise ProviderUncertain(failure)
            raise ProviderUnavailable(failure)
        if r.status_code == 429:
            retry_after = float(r.headers.get("Retry-After") or 1)
            raise ProviderRateLimited("Solapi rate limit", retry_after)
        if r.status_code >= 500:
            if sends:
                raise ProviderUncertain(f"Solapi answered {r.status_code}")
            raise ProviderUnavailable(f"Solapi answered {r.status_code}")
        if r.status_code >= 400:
            raise ProviderRejectedRequest(
                f"Solapi refused the request: {r.status_code} {_error(r)}"
            )
        return r.json()

    def _body(self, m: OutgoingMessage) -> dict[str, Any]:
        body: dict[str, Any] = {
            "to": phone_digits(m.to),
            "from": phone_digits(m.sender),
            "type": TYPES[m.channel],
            "text": m.text,
            "customFields": {"idempotencyKey": m.key},
        }
        if m.subject and m.channel == Channel.lms:
            body["subject"] = m.subject
        if m.channel == Channel.alimtalk:
            body["kakaoOptions"] = {
                "pfId": m.pf_id,
                "templateId": m.template_id,
                "variables": {f"#{{{k}}}": v for k, v in m.variables.items()},
                "disableSms": True,
            }
        return body

    async def send(self, messages: Sequence[OutgoingMessage]) -> SendOutcome:
        payload = {"messages": [self._body(m) for m in messages], "allowDuplicates": False}
        data = await self._request(
            "POST", "/messages/v4/send-many/detail", sends=True, json=payload
        )
        outcome = SendOutcome()
        for item in data.get("messageList") or []:
            key = (item.get("customFields") or {}).get("idempotencyKey", "")
            code = str(item.get("statusCode", ""))
            outcome.accepted[key] = Report(item["messageId"], state_of(code), code, "", key)
        for item in data.get("failedMessageList") or []:
            key = (item.get("customFields") or {}).get("idempotencyKey", "")
            outcome.rejected[key] = Report(
                item.get("messageId", ""),
                DeliveryState.failed,
                str(item.get("statusCode", "")),
                str(item.get("statusMessage", "")),
                key,
            )
        return outcome

    async def _list(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        start_key: str | None = None
        while True:
            query = {**params, "limit": LIST_PAGE}
            if start_key:
                query["startKey"] = start_key
            data = await self._request("GET", "/messages/v4/list", sends=False, params=query)
            items = data.get("messageList") or {}
            out.extend(items.values() if isinstance(items, dict) else items)
            start_key = data.get("nextKey")
            if not start_key:
                return out

    async def find(self, keys: Sequence[str], sender: str, since: dt.datetime) -> dict[str, Report]:
        wanted = set(keys)
        found: dict[str, Report] = {}
        for item in await self._list(
            {"from": phone_digits(sender), "startDate": since.astimezone(dt.UTC).isoformat()}
        ):
            key = (item.get("customFields") or {}).get("idempotencyKey", "")
            if key in wanted:
                found[key] = _report(item)
        return found

    async def status(self, provider_message_ids: Sequence[str]) -> list[Report]:
        out: list[Report] = []
        ids = list(provider_message_ids)
        for start in range(0, len(ids), 100):
            params = [("messageIds", i) for i in ids[start : start + 100]]
            out.extend(_report(item) for item in await self._list_params(params))
        return out

    async def _list_params(self, params: list[tuple[str, str]]) -> list[dict[str, Any]]:
        data = await self._request(
            "GET", "/messages/v4/list", sends=False, params=[*params, ("limit", str(LIST_PAGE))]
        )
        items = data.get("messageList") or {}
        return list(items.values() if isinstance(items, dict) else items)

    def parse_reports(self, payload: Any) -> list[Report]:
        return parse_reports(payload)


def _report(item: dict[str, Any]) -> Report:
    code = str(item.get("statusCode", ""))
    return Report(
        str(item["messageId"]),
        state_of(code),
        code,
        str(item.get("statusMessage") or ""),
        str((item.get("customFields") or {}).get("idempotencyKey", "")),
    )


def _error(r: httpx.Response) -> str:
    try:
        data = r.json()
    except ValueError:
        return r.text[:200]
    return f"{data.get('errorCode', '')} {data.get('errorMessage', '')}".strip()


def parse_reports(payload: Any) -> list[Report]:
    """Solapi's single-report webhook: a list of ``{"data": {messageId, statusCode,
    statusMessage, customFields}}``."""
    if not isinstance(payload, list):
        raise ValueError("a Solapi report is a JSON list")
    out = []
    for entry in payload:
        data = entry.get("data", entry) if isinstance(entry, dict) else None
        if not isinstance(data, dict) or not data.get("messageId"):
            raise ValueError("each report needs data.messageId")
        out.append(_report(data))
    return out
