"""The suite's Schemathesis run holds refusals of schema-valid requests to the operation's
own list of unstated rules (``api.openapi.unstated``).

Schemathesis' ``positive_data_acceptance`` takes a 415 or 422 to a request the schema
allows as a failure, whatever the reason. Some reasons no JSON Schema can state (an end
before its start, a lecture that does not exist, a score above the exam's maximum, a cursor
the API did not issue), and the API lists those per operation in its 422 answer
(``x-unstated-rules``). The suite's configuration (``schemathesis.toml``) lets that check
pass 415 and 422, and ``refusal_states_its_rule`` takes over for them, more strictly: such a
refusal passes only when every field it names is covered by one of the operation's listed
rules. A refusal for any other reason -- a limit the schema could state and does not -- still
fails the run.

Loaded by ``test_fuzz.py`` through ``SCHEMATHESIS_HOOKS``.
"""

from __future__ import annotations

import json
import re
from typing import Any

import schemathesis
from schemathesis.specs.openapi.checks import is_unexpected_http_status_case

from api.openapi import UNSTATED_EXTENSION

REFUSALS = frozenset({415, 422})
INDEX = re.compile(r"\[\d+\]")


def _covered(field: str, rules: dict[str, str]) -> bool:
    field = INDEX.sub("[]", field)
    return any(field == rule or field.startswith((f"{rule}.", f"{rule}[")) for rule in rules)


def _rules(case: Any) -> dict[str, str]:
    refusal = case.operation.definition.raw.get("responses", {}).get("422", {})
    return dict(refusal.get(UNSTATED_EXTENSION) or {})


@schemathesis.check
def refusal_states_its_rule(ctx: Any, response: Any, case: Any) -> bool | None:
    """A request the schema allows, refused with 415 or 422, was refused for a rule the
    operation lists; otherwise the schema hides a rule it could state."""
    meta = case.meta
    if (
        meta is None
        or not meta.generation.mode.is_positive
        or response.status_code not in REFUSALS
        or is_unexpected_http_status_case(case)
    ):
        return None
    try:
        problem = json.loads(response.content)
        errors = problem.get("errors") or []
    except (ValueError, AttributeError):
        problem, errors = {}, []
    rules = _rules(case)
    # A refusal that names no field is keyed by its problem type.
    fields = [str(e.get("field", "")) for e in errors if isinstance(e, dict)] or [
        str(problem.get("type", ""))
    ]
    hidden = [f for f in fields if not _covered(f, rules)]
    if hidden:
        raise AssertionError(
            f"A schema-valid request was refused ({response.status_code}) for a rule neither "
            f"the schema nor the operation's {UNSTATED_EXTENSION} states: "
            f"{hidden}; listed: {sorted(rules) or 'none'}"
        )
    return None
