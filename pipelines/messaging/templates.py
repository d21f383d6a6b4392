"""``#{variable}`` templates (the placeholder syntax Kakao Alimtalk templates use).

Rendering is strict: a placeholder without a value is an error naming every missing
variable, never an empty string sent to a parent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

PLACEHOLDER = re.compile(r"#\{([^{}#\s]{1,40})\}")


class TemplateError(ValueError):
    def __init__(self, code: str, message: str, missing: list[str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.missing = missing or []


def variables_of(template: str) -> list[str]:
    """The placeholders of ``template``, in order of first appearance."""
    seen: dict[str, None] = {}
    for name in PLACEHOLDER.findall(template):
        seen.setdefault(name, None)
    return list(seen)


def check_template(template: str) -> None:
    """Refuse a template with a malformed placeholder (``#{``, ``#{ 이름 }``)."""
    leftover = PLACEHOLDER.sub("", template)
    if "#{" in leftover:
        raise TemplateError(
            "malformed", "a '#{' is not closed or holds spaces; write placeholders as #{name}"
        )


def render(template: str, values: Mapping[str, Any]) -> str:
    """``template`` with every ``#{name}`` replaced; ``TemplateError`` lists the missing."""
    missing = [name for name in variables_of(template) if values.get(name) in (None, "")]
    if missing:
        raise TemplateError(
            "missing_variable",
            "no value for template variable(s): " + ", ".join(f"#{{{m}}}" for m in missing),
            missing,
        )
    return PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), template)
