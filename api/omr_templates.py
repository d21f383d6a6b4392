"""OMR answer card templates (``/omr/templates``), per academy: made from the built-in
Korean card, written as our JSON, or imported from an OMRChecker ``template.json``.
Cards with our corner markers can be printed (PNG, PDF).

Roles: owner, admin, teacher and staff read; owner, admin and teacher write.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Callable
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Response, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from api import rules
from api.auth import require_roles, require_staff
from api.errors import Problem, field_error
from api.pagination import DEFAULT_LIMIT, check_limit, page_schema
from models import omr as omr_models
from models.limits import Base64Text, Name, RequiredTitle
from models.omr import TemplateOut
from models.pages import Page
from models.scope import TenantScope
from models.tables import Role
from pipelines.omr.card import MAX_QUESTIONS, card_pdf, card_png, korean_card
from pipelines.omr.omrchecker import import_omrchecker
from pipelines.omr.template import (
    Template,
    TemplateError,
    parse_template,
    template_json,
)

require_grader = require_roles(Role.owner, Role.admin, Role.teacher)

# The list's schema component is named after its item's module: this keeps the name it
# had while ``TemplateOut`` was declared in ``api.omr`` (the OpenAPI document does not change).
TemplateOutPage = Annotated[Page[TemplateOut], page_schema(TemplateOut)]


class TemplateCreate(msgspec.Struct, forbid_unknown_fields=True):
    """``spec``: the template JSON (``pipelines.omr.template.Template``)."""

    spec: dict[Name, Any]


class BuiltinCreate(msgspec.Struct, forbid_unknown_fields=True):
    """The built-in Korean answer card: 1..60 questions of 4 or 5 choices, a 4..8-digit
    student number (the last digits of the student's mobile number)."""

    name: RequiredTitle | None = None
    questions: Annotated[int, msgspec.Meta(ge=1, le=MAX_QUESTIONS)] = 20
    choices: Literal[4, 5] = 5
    id_digits: Annotated[int, msgspec.Meta(ge=4, le=8)] = 8


class OmrCheckerImport(msgspec.Struct, forbid_unknown_fields=True):
    """OMRChecker's ``template.json`` (and optionally its ``config.json``); marker images
    for ``CropOnMarkers`` by their ``relativePath``, base64-encoded; ``student_field``
    names the custom label (or field) holding the student number (default: the first
    whose name starts with ``roll`` or contains ``id``)."""

    name: RequiredTitle
    template: dict[Name, Any]
    config: dict[Name, Any] | None = None
    marker_images: dict[str, Base64Text] = {}
    student_field: Name | None = None


class TemplateUpdate(msgspec.Struct, forbid_unknown_fields=True):
    name: RequiredTitle | msgspec.UnsetType = msgspec.UNSET
    spec: dict[Name, Any] | msgspec.UnsetType = msgspec.UNSET


def template_problem(exc: TemplateError, prefix: str = "spec") -> Problem:
    """A template's issues as one 422, each under ``prefix`` (the importer's own
    ``config.`` and ``student_field`` issues keep their names)."""
    errors = [
        {
            "field": p
            if p.startswith(("config.", "student_field")) or p == "config"
            else f"{prefix}.{p}"
            if p
            else prefix,
            "message": m,
        }
        for p, m in exc.issues
    ]
    return Problem(422, f"{len(errors)} field error(s)", errors=errors)


def _template_name(name: str) -> str:
    """The name with its whitespace collapsed; 1..200 characters or a field error."""
    name = " ".join(name.split())
    if not name or len(name) > 200:
        raise field_error("name", "must be 1..200 characters")
    return name


async def _create(scope: TenantScope, source: str, template: Template) -> TemplateOut:
    """Store a parsed template under its (whitespace-collapsed) name; a name taken is 409."""
    name = _template_name(template.name)
    spec = {**template_json(template), "name": name}
    return await omr_models.insert_template(scope, name=name, source=source, spec=spec)


async def _card(
    scope: TenantScope, template_id: str, render: Callable[[Template], bytes], media_type: str
) -> Response[bytes]:
    """The template's card drawn by ``render`` (off the event loop). Only a card with our
    corner markers can be printed: any other is a 409."""
    template = parse_template((await omr_models.get_template(scope, template_id)).spec)
    if template.markers is None:
        raise Problem(
            409,
            "only cards with our corner markers can be printed; this template describes "
            "another printed form",
            type_="/problems/not-printable",
        )
    return Response(await asyncio.to_thread(render, template), media_type=media_type)


class TemplateController(Controller):
    path = "/api/v1/omr/templates"
    tags = ["omr"]
    guards = [require_staff]

    @get("/", summary="The academy's answer card templates, newest first")
    async def list_templates(
        self,
        tenant_scope: NamedDependency[TenantScope],
        limit: FromQuery[int] = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
    ) -> TemplateOutPage:
        return await omr_models.list_templates(
            tenant_scope, cursor=cursor, limit=check_limit(limit)
        )

    @post(
        "/",
        opt=rules.OMR_TEMPLATE_WRITE,
        status_code=HTTP_201_CREATED,
        guards=[require_grader],
        summary="Create a template from its JSON",
    )
    async def create(
        self, data: JSONBody[TemplateCreate], tenant_scope: NamedDependency[TenantScope]
    ) -> TemplateOut:
        try:
            template = parse_template(data.spec)
        except TemplateError as exc:
            raise template_problem(exc) from None
        return await _create(tenant_scope, "custom", template)

    @post(
        "/builtin",
        status_code=HTTP_201_CREATED,
        guards=[require_grader],
        summary="Create the built-in Korean answer card (OMR 답안지)",
    )
    async def create_builtin(
        self, data: JSONBody[BuiltinCreate], tenant_scope: NamedDependency[TenantScope]
    ) -> TemplateOut:
        try:
            template = korean_card(data.questions, data.choices, data.id_digits, name=data.name)
        except ValueError as exc:
            raise field_error("body", str(exc)) from None
        return await _create(tenant_scope, "builtin", template)

    @post(
        "/omrchecker",
        opt=rules.OMRCHECKER_IMPORT,
        status_code=HTTP_201_CREATED,
        guards=[require_grader],
        summary="Import an OMRChecker template.json",
    )
    async def import_omrchecker(
        self, data: JSONBody[OmrCheckerImport], tenant_scope: NamedDependency[TenantScope]
    ) -> TemplateOut:
        """Every property of OMRChecker's template and config schemas is honoured with its
        meaning or refused with a 422 naming it (``FeatureBasedAlignment``, ``auto_align``
        and ``filter_out_multimarked_files`` are refused); never skipped."""
        markers: dict[str, bytes] = {}
        for path, b64 in data.marker_images.items():
            try:
                markers[path] = base64.b64decode(b64, validate=True)
            except (binascii.Error, ValueError):
                raise field_error(f"marker_images.{path}", "not base64") from None
        try:
            template = import_omrchecker(
                data.template,
                name=data.name,
                marker_images=markers,
                config_json=data.config,
                student_field=data.student_field,
            )
        except TemplateError as exc:
            raise template_problem(exc, "template") from None
        return await _create(tenant_scope, "omrchecker", template)

    @get("/{template_id:str}", summary="One template")
    async def get_one(
        self, template_id: FromPath[str], tenant_scope: NamedDependency[TenantScope]
    ) -> TemplateOut:
        return await omr_models.get_template(tenant_scope, template_id)

    @patch(
        "/{template_id:str}",
        opt=rules.OMR_TEMPLATE_WRITE,
        guards=[require_grader],
        summary="Rename or change a template",
    )
    async def update(
        self,
        template_id: FromPath[str],
        data: JSONBody[TemplateUpdate],
        tenant_scope: NamedDependency[TenantScope],
    ) -> TemplateOut:
        """Batches already read keep the template they were read with."""
        current = await omr_models.get_template(tenant_scope, template_id)
        spec = current.spec if isinstance(data.spec, msgspec.UnsetType) else data.spec
        name = _template_name(
            current.name if isinstance(data.name, msgspec.UnsetType) else data.name
        )
        try:
            template = parse_template({**spec, "name": name})
        except TemplateError as exc:
            raise template_problem(exc) from None
        return await omr_models.update_template(
            tenant_scope, current.id, name=name, spec=template_json(template)
        )

    @delete(
        "/{template_id:str}",
        status_code=HTTP_204_NO_CONTENT,
        guards=[require_grader],
        summary="Delete a template (exams using it are left without one)",
    )
    async def delete_template(
        self, template_id: FromPath[str], tenant_scope: NamedDependency[TenantScope]
    ) -> None:
        await omr_models.delete_template(tenant_scope, template_id)

    @get(
        "/{template_id:str}/card.png",
        summary="The printable card as a PNG (150 dpi)",
        media_type="image/png",
    )
    async def card_png(
        self, template_id: FromPath[str], tenant_scope: NamedDependency[TenantScope]
    ) -> Response[bytes]:
        return await _card(tenant_scope, template_id, card_png, "image/png")

    @get(
        "/{template_id:str}/card.pdf",
        summary="The printable card as a PDF (A4, 150 dpi)",
        media_type="application/pdf",
    )
    async def card_pdf(
        self, template_id: FromPath[str], tenant_scope: NamedDependency[TenantScope]
    ) -> Response[bytes]:
        return await _card(tenant_scope, template_id, card_pdf, "application/pdf")
