"""The suite's check of refusals: a schema-valid request refused for a rule the operation
does not list fails the fuzz run (``tests/integration/fuzz_hooks.py``)."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from tests.integration.fuzz_hooks import refusal_states_its_rule

RULES = {"cursor": "…", "items[].student_id": "…", "template": "…", "/problems/no-sender": "…"}


def _case(positive: bool = True) -> Any:
    raw = {"responses": {"422": {"x-unstated-rules": RULES}}}
    mode = SimpleNamespace(is_positive=positive)
    meta = SimpleNamespace(generation=SimpleNamespace(mode=mode), phase=SimpleNamespace(data=None))
    return SimpleNamespace(
        meta=meta, _meta=meta, operation=SimpleNamespace(definition=SimpleNamespace(raw=raw))
    )


def _refusal(status: int, *fields: str, type_: str = "/problems/validation") -> Any:
    body = {"type": type_, "errors": [{"field": f, "message": "no"} for f in fields]}
    return SimpleNamespace(status_code=status, content=json.dumps(body).encode())


@pytest.mark.parametrize(
    "fields",
    [("cursor",), ("items[3].student_id",), ("template.fieldBlocks", "template[0]")],
)
def test_a_refusal_for_a_listed_rule_passes(fields):
    assert refusal_states_its_rule(None, _refusal(422, *fields), _case()) is None


def test_a_refusal_naming_no_field_is_matched_by_its_type():
    response = _refusal(422, type_="/problems/no-sender")
    assert refusal_states_its_rule(None, response, _case()) is None
    with pytest.raises(AssertionError, match="/problems/other"):
        refusal_states_its_rule(None, _refusal(422, type_="/problems/other"), _case())


@pytest.mark.parametrize(
    "fields", [("limit",), ("cursor", "phone"), ("items[0].score",), ("templates",)]
)
def test_a_refusal_for_an_unlisted_rule_fails(fields):
    with pytest.raises(AssertionError, match="refused \\(415\\)"):
        refusal_states_its_rule(None, _refusal(415, *fields), _case())


def test_other_answers_and_negative_cases_are_not_its_business():
    assert refusal_states_its_rule(None, _refusal(400, "limit"), _case()) is None
    assert refusal_states_its_rule(None, _refusal(422, "limit"), _case(positive=False)) is None
