"""Writing the outbox and the audit log, in the caller's transaction (so they commit with
the change they describe). ``before``/``after`` and payloads are dicts of JSON values (the
connection encodes them)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from models.db import connection

AuditEntry = tuple[Any, str, dict[str, Any] | None, dict[str, Any] | None]
"""(entity_id, action, before, after)"""

Event = tuple[str, str, dict[str, Any]]
"""(kind, dedupe_key, payload)"""


def audits_from(
    source: str, *, tenant: str, actor: str, entity: str, entity_id: str, action: str,
    before: str, after: str = "NULL",
) -> str:  # fmt: skip
    """The statement appending audit rows, one per row of ``source`` (the ``FROM …`` part
    of a SELECT, ``ORDER BY`` included if the order matters); the other arguments are
    the SQL of each column's value. Alone or as a step of a caller's statement."""
    return f"""
        INSERT INTO audit_log (tenant, actor, entity, entity_id, action, before, after, at)
        SELECT {tenant}, {actor}, {entity}, {entity_id}, {action}, {before}, {after}, now()
        {source}"""


def events_from(source: str, *, tenant: str, kind: str, dedupe_key: str, payload: str) -> str:
    """The statement recording outbox events, one per row of ``source`` (as
    ``audits_from``) and one per ``dedupe_key`` ever: a key already recorded is skipped."""
    return f"""
        INSERT INTO outbox_event (id, tenant, kind, dedupe_key, payload, created_at, attempts)
        SELECT gen_random_uuid(), {tenant}, {kind}, {dedupe_key}, {payload}, now(), 0
        {source}
        ON CONFLICT (dedupe_key) DO NOTHING"""


def insert_audits(tenant: str, actor: str, entity: str, *, first: int) -> str:
    """``audits_from`` four array parameters from ``$first`` on: entity ids, actions,
    befores, afters (``AuditEntry``'s columns), their order kept."""
    return audits_from(
        f"""FROM unnest(${first}::uuid[], ${first + 1}::text[], ${first + 2}::jsonb[],
                    ${first + 3}::jsonb[]) WITH ORDINALITY AS u(entity_id, action, before, after, n)
        ORDER BY u.n""",
        tenant=tenant, actor=actor, entity=entity, entity_id="u.entity_id",
        action="u.action", before="u.before", after="u.after",
    )  # fmt: skip


def insert_events(tenant: str, *, first: int) -> str:
    """``events_from`` three array parameters from ``$first`` on: kinds, dedupe keys,
    payloads (``Event``'s columns)."""
    return events_from(
        f"""FROM unnest(${first}::text[], ${first + 1}::text[], ${first + 2}::jsonb[])
             AS u(kind, dedupe_key, payload)""",
        tenant=tenant, kind="u.kind", dedupe_key="u.dedupe_key", payload="u.payload",
    )  # fmt: skip


async def record_audits(
    *, tenant_id: Any, actor_id: Any, entity: str, entries: Sequence[AuditEntry]
) -> None:
    """Append audit rows, in the caller's transaction (so they commit with the change).
    One statement however many entries; their order is kept."""
    if not entries:
        return
    async with connection() as conn:
        await conn.execute(
            insert_audits("$1", "$2", "$3", first=4),
            tenant_id,
            actor_id,
            entity,
            [e[0] for e in entries],
            [e[1] for e in entries],
            [e[2] for e in entries],
            [e[3] for e in entries],
        )


async def record_audit(
    *,
    tenant_id: Any,
    actor_id: Any,
    entity: str,
    entity_id: Any,
    action: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> None:
    await record_audits(
        tenant_id=tenant_id,
        actor_id=actor_id,
        entity=entity,
        entries=[(entity_id, action, before, after)],
    )


async def emit_events(*, tenant_id: Any, events: Sequence[Event]) -> int:
    """Record domain events in the outbox, in the caller's transaction. An event whose
    ``dedupe_key`` is already recorded is skipped. Returns how many were recorded."""
    if not events:
        return 0
    async with connection() as conn:
        rows = await conn.fetch(
            insert_events("$1", first=2) + " RETURNING 1",
            tenant_id,
            [e[0] for e in events],
            [e[1] for e in events],
            [e[2] for e in events],
        )
    return len(rows)


async def emit_event(
    *, tenant_id: Any, kind: str, dedupe_key: str, payload: dict[str, Any]
) -> bool:
    """One event (see ``emit_events``). Returns True if this call recorded it."""
    return await emit_events(tenant_id=tenant_id, events=[(kind, dedupe_key, payload)]) == 1
