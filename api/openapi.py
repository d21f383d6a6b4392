"""The OpenAPI 3.1 document at ``/schema/openapi.json`` and the docs page at ``/schema``.

The page is Swagger UI 5 (it reads OpenAPI 3.1; Swagger UI 3 and 4 refuse the document),
served from the pinned ``swagger-ui-bundle-v2`` wheel, so it works with no CDN and no
internet. Its "Authorize" button takes the access token of ``POST /api/v1/auth/login``: the
operations that authenticate the caller carry the ``BearerAuth`` requirement, so Swagger UI
sends ``Authorization: Bearer <token>`` with them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec
from litestar import Litestar, Router
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import (
    Components,
    Link,
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Reference,
    Schema,
    SecurityScheme,
)
from litestar.routes import HTTPRoute
from litestar.static_files import create_static_files_router
from litestar.types import Method
from swagger_ui_bundle import swagger_ui_path

from api.errors import PROBLEM_JSON, TYPES
from api.pagination import MAX_LIMIT
from models.limits import CONTROL_CHARACTERS, Day

SCHEMA_PATH = "/schema"
STATIC_PATH = f"{SCHEMA_PATH}/static"
BEARER = "BearerAuth"
# The dependency every authenticated handler reaches (``api.auth.provide_principal``).
PRINCIPAL = "principal"


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="academy API",
        version="1.0.0",
        description=(
            "Backend for private academies (학원). Errors are RFC 9457 problem+json.\n\n"
            "To try calls: `POST /api/v1/auth/login`, then **Authorize** with its "
            "`access_token`."
        ),
        path=SCHEMA_PATH,
        operation_id_creator=operation_id,
        components=Components(
            security_schemes={
                BEARER: SecurityScheme(
                    type="http",
                    scheme="bearer",
                    bearer_format="JWT",
                    description="The `access_token` of `POST /api/v1/auth/login`.",
                )
            }
        ),
        render_plugins=[
            SwaggerRenderPlugin(
                path="/",
                js_url=f"{STATIC_PATH}/swagger-ui-bundle.js",
                css_url=f"{STATIC_PATH}/swagger-ui.css",
                standalone_preset_js_url=f"{STATIC_PATH}/swagger-ui-standalone-preset.js",
                favicon=f"<link rel='icon' type='image/png' href='{STATIC_PATH}/favicon-32x32.png'>",
            )
        ],
    )


# Handler names that read badly after the tag: ``students_get`` rather than ``students_get_one``.
NAME_ALIASES = {"get_one": "get"}
VERBS = frozenset({"list", "get", "create", "update", "delete"})


def operation_id(handler: HTTPRouteHandler, method: Method, path: list[Any]) -> str:
    """``<tag>_<handler name>`` (``students_list``, ``students_create``, ``students_get``):
    stable while the handler keeps its name, whatever its path, so generated clients keep
    their function names. A name that repeats the tag drops it (``videos_list``, not
    ``videos_list_videos``). Litestar refuses to start on a duplicate."""
    tags = handler.resolve_tags()
    tag = tags[0] if tags else "default"
    name = handler.handler_name.strip("_")
    verb, _, rest = name.partition("_")
    if verb in VERBS and rest in (tag, tag.removesuffix("s")):
        name = verb
    return f"{tag}_{NAME_ALIASES.get(name, name)}"


def static_assets() -> Router:
    """Swagger UI's scripts, styles and icons, from the wheel."""
    return create_static_files_router(
        path=STATIC_PATH, directories=[swagger_ui_path], include_in_schema=False
    )


def _needs(handler: HTTPRouteHandler, wanted: str) -> bool:
    """Whether the handler's parameters, or the dependencies they pull in, reach ``wanted``."""
    provided = handler.resolve_dependencies()
    todo, seen = list(handler.parsed_fn_signature.parameters), set()
    while todo:
        name = todo.pop()
        if name == wanted:
            return True
        if name in seen or name not in provided:
            continue
        seen.add(name)
        todo.extend(provided[name].parsed_fn_signature.parameters)
    return False


def _operations(app: Litestar) -> Iterator[tuple[HTTPRouteHandler, str, str]]:
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            if handler.resolve_include_in_schema():
                for method in handler.http_methods:
                    yield handler, route.path_format or "/", method.lower()


def document_bearer_auth(app: Litestar) -> None:
    """Adds the ``BearerAuth`` requirement to every operation whose handler authenticates the
    caller, found from what the handler depends on, the way the request itself finds it.

    Not declared per router: Litestar adds security requirements layer by layer and cannot
    take one away, and the public routes (login, refresh, webhooks) share their routers with
    private ones. The document is built here, at start-up, instead of on the first visit of
    the docs (about half a second), so a document Litestar cannot build stops the start.
    """
    document = app.openapi_schema
    for handler, path, method in _operations(app):
        operation = getattr(document.paths[path], method, None) if document.paths else None
        if operation is not None and _needs(handler, PRINCIPAL):
            operation.security = [{BEARER: []}]


PROBLEM = "Problem"
_STRING = Schema(type=OpenAPIType.STRING)


def _problem_schema() -> Schema:
    """The one body of every error (``api.errors.problem``), RFC 9457 with our members."""
    types = sorted({type_ for type_, _ in TYPES.values()})
    return Schema(
        type=OpenAPIType.OBJECT,
        required=["type", "title", "status", "detail", "instance"],
        properties={
            "type": Schema(
                type=OpenAPIType.STRING,
                description=(
                    "Stable relative URI of the kind of problem; switch on it, not on "
                    "`title`. The generic ones are listed in `examples`; a route may answer "
                    "a more specific one (e.g. `/problems/lecture-full`)."
                ),
                examples=types,
            ),
            "title": _STRING,
            "status": Schema(type=OpenAPIType.INTEGER),
            "detail": _STRING,
            "instance": Schema(type=OpenAPIType.STRING, description="The request path."),
            "request_id": Schema(
                type=OpenAPIType.STRING, description="Echoes the `X-Request-ID` header."
            ),
            "errors": Schema(
                type=OpenAPIType.ARRAY,
                description="Every field error of a 422.",
                items=Schema(
                    type=OpenAPIType.OBJECT,
                    required=["field", "message"],
                    properties={
                        "field": _STRING,
                        "message": _STRING,
                        "source": Schema(
                            type=OpenAPIType.STRING, enum=["body", "query", "path", "header"]
                        ),
                    },
                ),
            ),
        },
        # Some problems carry more members (e.g. ``max_bytes`` of a 413).
        additional_properties=True,
    )


_HEADERS: dict[int, dict[str, OpenAPIHeader | Reference]] = {
    401: {"WWW-Authenticate": OpenAPIHeader(schema=_STRING, description="`Bearer`")},
    429: {"Retry-After": OpenAPIHeader(schema=_STRING, description="Seconds to wait.")},
}


def _problem_responses() -> dict[str, OpenAPIResponse | Reference]:
    """One shared response per problem status, all with the ``Problem`` body."""
    body = {PROBLEM_JSON: OpenAPIMediaType(schema=Reference(f"#/components/schemas/{PROBLEM}"))}
    return {
        f"{PROBLEM}{status}": OpenAPIResponse(
            description=f"{title} (`{type_}`)", content=body, headers=_HEADERS.get(status)
        )
        for status, (type_, title) in TYPES.items()
        if status != 405
    }


def _problem_statuses(
    operation: Operation, path: str, method: str, authenticated: bool
) -> list[int]:
    """The problems an operation can answer, from what it takes: a malformed request (400)
    any; a token or signature (401, 403); a path id (404, 409); a write (409); a body or
    query (422); a body (413); the login limits (429)."""
    params = operation.parameters or []
    body = operation.request_body is not None
    statuses = [400]
    # Login, the provider-signed webhooks and the metrics token refuse their own credentials.
    signed = path.startswith("/api/v1/auth") or "/webhooks/" in path or path == "/metrics"
    if authenticated or signed:
        statuses += [401, 403]
    by_id = any(getattr(p, "param_in", None) == "path" for p in params)
    if by_id:
        statuses.append(404)
    # A resource's state may refuse the call (a closed lecture, a video not ready yet).
    if (by_id or method in ("post", "put", "patch", "delete")) and path.startswith("/api/v1/"):
        statuses.append(409)
    if body:
        statuses.append(413)
    if body or params:
        statuses.append(422)
    if path in ("/api/v1/auth/login", "/api/v1/auth/refresh"):
        statuses.append(429)
    return statuses


# The key of a handler's ``opt`` that holds its unstated rules (``unstated``).
UNSTATED = "unstated_rules"
# Where the 422 answer of an operation lists them, for people and for tools.
UNSTATED_EXTENSION = "x-unstated-rules"
CURSOR_RULE = "must be a `next_cursor` this API returned for the same list and filters"


def unstated(rules: Mapping[str, str]) -> dict[str, Any]:
    """A handler's ``opt`` naming the rules it enforces that no JSON Schema can state, so
    the schema allows requests the handler refuses (422, or 415 for a file's content): a
    field compared with another (an end before its start), a row that must exist (``no
    such lecture``), a value checked against stored state (a score above the exam's
    maximum), a phone number's validity, a document checked by its own parser.

    Keys are the ``errors[].field`` the refusal names, list indices written ``[]``
    (``items[].student_id``); a key covers the fields under it (``template`` covers
    ``template.fieldBlocks``). A refusal that names no field is keyed by its problem
    ``type``. Values say the rule. Every other rule is in the schema; the
    suite's Schemathesis run holds the API to that (``tests/integration/fuzz_hooks.py``).
    """
    return {UNSTATED: dict(rules)}


@dataclass
class _Refusals(OpenAPIResponse):
    """A 422 answer that also lists the operation's unstated rules."""

    rules: dict[str, str] = field(default_factory=dict)

    @property
    def _exclude_fields(self) -> set[str]:
        return {"rules"}

    def to_schema(self) -> dict[str, Any]:
        return {**super().to_schema(), UNSTATED_EXTENSION: dict(self.rules)}


def _unstated_rules(handler: HTTPRouteHandler, operation: Operation) -> dict[str, str]:
    rules = dict(handler.opt.get(UNSTATED, {}))
    # Every list takes the cursor of its own previous page, and only that: no schema can say so.
    if any(getattr(p, "name", None) == "cursor" for p in operation.parameters or []):
        rules.setdefault("cursor", CURSOR_RULE)
    return rules


def _refusals(rules: dict[str, str]) -> _Refusals:
    listed = "\n".join(f"- `{name}` {rule}" for name, rule in sorted(rules.items()))
    type_, title = TYPES[422]
    return _Refusals(
        description=f"{title} (`{type_}`). Besides what the schema states:\n\n{listed}",
        content={
            PROBLEM_JSON: OpenAPIMediaType(schema=Reference(f"#/components/schemas/{PROBLEM}"))
        },
        rules=rules,
    )


def document_problems(app: Litestar) -> None:
    """Documents, on every operation, the problem+json answers it can give, each a
    reference to one shared response; Litestar's own 400 (a body we never send) goes. An
    operation with rules no schema can state (``unstated``) gets its own 422 that lists them.
    """
    document = app.openapi_schema
    components = document.components
    components.schemas = {**(components.schemas or {}), PROBLEM: _problem_schema()}
    components.responses = {**(components.responses or {}), **_problem_responses()}
    for handler, path, method in _operations(app):
        operation = getattr(document.paths[path], method, None) if document.paths else None
        if operation is None:
            continue
        responses = {k: v for k, v in (operation.responses or {}).items() if k != "400"}
        statuses = _problem_statuses(operation, path, method, _needs(handler, PRINCIPAL))
        if rules := _unstated_rules(handler, operation):
            statuses.append(422)
            responses["422"] = _refusals(rules)
        for status in statuses:
            responses.setdefault(
                str(status), Reference(f"#/components/responses/{PROBLEM}{status}")
            )
        operation.responses = responses


def document_maximum(app: Litestar, component: str, field: str, maximum: int) -> None:
    """States a limit the deployment sets (a setting, so not in the Struct) on a body field,
    where the document is built: a request over it is refused, and the schema says so."""
    schema = ((app.openapi_schema.components.schemas or {})[component].properties or {})[field]
    assert isinstance(schema, Schema), (component, field)
    schema.maximum = maximum


_METHODS = ("get", "put", "post", "delete", "patch")


def _resolved(document: Any, schema: Any) -> Any:
    """``schema``, or the component a reference names."""
    if isinstance(schema, Reference):
        return (document.components.schemas or {}).get(schema.ref.rsplit("/", 1)[-1])
    return schema


def _body_of(document: Any, operation: Operation) -> tuple[str, Schema] | None:
    """The status and JSON body schema of ``operation``'s first 2xx answer with one."""
    for status, response in (operation.responses or {}).items():
        media = getattr(response, "content", None) or {}
        schema = _resolved(document, getattr(media.get("application/json"), "schema", None))
        if status.startswith("2") and isinstance(schema, Schema):
            return status, schema
    return None


def _link_sources(path: str, body: Schema, document: Any) -> Iterator[tuple[str, str]]:
    """(path prefix a target starts with, runtime expression of the id it takes)."""
    properties = body.properties or {}
    if "id" in properties:
        # What was created: the operations under it, and under its own collection.
        yield f"{path.rstrip('/')}/{{", "$response.body#/id"
        yield f"/api/v1/{path.rstrip('/').rsplit('/', 1)[-1]}/{{", "$response.body#/id"
    for name, declared in properties.items():
        schema = _resolved(document, declared)
        if name.endswith("_id"):  # a job, a batch: wherever a path starts from that id
            yield f"{{{name}}}", f"$response.body#/{name}"
        elif isinstance(schema, Schema) and "id" in (schema.properties or {}):
            yield f"/api/v1/{name}s/{{", f"$response.body#/{name}/id"


def _first_param(path: str) -> tuple[str, str] | None:
    """The path up to and including its first ``{``, and that parameter's name."""
    head, brace, rest = path.partition("{")
    return (head + brace, rest.split("}", 1)[0]) if brace else None


def document_links(app: Litestar) -> None:
    """OpenAPI links from what an operation creates to the operations on it: ``POST
    /api/v1/students`` answers the student whose ``id`` is ``student_id`` of every
    ``/api/v1/students/{student_id}...`` operation; an exam created under its lecture feeds
    ``/api/v1/exams/{exam_id}...``; a ``job_id`` feeds ``/api/v1/jobs/{job_id}``. A generated
    client and a stateful test follow them from a row to what can be done with it."""
    document = app.openapi_schema
    paths = document.paths or {}
    for path, item in paths.items():
        create = getattr(item, "post", None)
        found = _body_of(document, create) if create is not None else None
        if create is None or found is None:
            continue
        status, body = found
        links: dict[str, Link | Reference] = {}
        for prefix, expression in _link_sources(path, body, document):
            for target, target_item in paths.items():
                first = _first_param(target)
                if first is None or target == path:
                    continue
                head, param = first
                if not (head == prefix or (prefix.startswith("{") and prefix == f"{{{param}}}")):
                    continue
                for method in _METHODS:
                    op = getattr(target_item, method, None)
                    if op is not None and op.operation_id:
                        link = links.setdefault(
                            op.operation_id, Link(operation_id=op.operation_id, parameters={})
                        )
                        if isinstance(link, Link) and link.parameters is not None:
                            link.parameters.setdefault(param, expression)
        response = (create.responses or {}).get(status)
        if links and isinstance(response, OpenAPIResponse):
            response.links = {**(response.links or {}), **links}


# ``api.hygiene`` refuses these characters in every path and query value.
PRINTABLE = f"^[^{CONTROL_CHARACTERS.pattern[1:-1]}]*$"


def _free_string(schema: Any) -> bool:
    return (
        isinstance(schema, Schema)
        and schema.type == OpenAPIType.STRING
        and not (schema.pattern or schema.enum or schema.format or schema.const)
    )


def _nested(schema: Schema) -> Iterable[Any]:
    yield from (schema.properties or {}).values()
    yield from schema.one_of or []
    yield from schema.any_of or []
    yield from schema.all_of or []
    yield from schema.prefix_items or []
    yield from [schema.items, schema.additional_properties, schema.property_names]


def _printable_strings(schema: Any) -> None:
    """Every free string of ``schema``, nested ones too, takes the ``PRINTABLE`` pattern."""
    todo, seen = [schema], set()
    while todo:
        item = todo.pop()
        if not isinstance(item, Schema) or id(item) in seen:
            continue
        seen.add(id(item))
        if _free_string(item):
            item.pattern = PRINTABLE
        elif item.type == OpenAPIType.OBJECT and item.additional_properties not in (None, False):
            # A free-form object's keys are text too.
            if item.property_names is None:
                item.property_names = Schema(type=OpenAPIType.STRING)
            if isinstance(item.property_names, Schema) and item.property_names.pattern is None:
                item.property_names.pattern = PRINTABLE
        todo.extend(_nested(item))


def _closed_structs(annotation: Any) -> Iterator[type[msgspec.Struct]]:
    """The body Structs, nested ones too, that refuse unknown fields."""
    todo, seen = [msgspec.inspect.type_info(annotation)], set()
    while todo:
        info = todo.pop()
        if isinstance(info, msgspec.inspect.StructType):
            if info.cls in seen:
                continue
            seen.add(info.cls)
            if info.forbid_unknown_fields:
                yield info.cls
            todo.extend(f.type for f in info.fields)
        elif isinstance(info, msgspec.inspect.UnionType):
            todo.extend(info.types)
        elif isinstance(info, (msgspec.inspect.ListType, msgspec.inspect.SetType)):
            todo.append(info.item_type)
        elif isinstance(info, msgspec.inspect.DictType):
            todo.append(info.value_type)


# msgspec's JSON Schema keywords of a constraint, and Litestar's attribute for each.
_CONSTRAINTS = {
    "minimum": "minimum",
    "maximum": "maximum",
    "exclusiveMinimum": "exclusive_minimum",
    "exclusiveMaximum": "exclusive_maximum",
    "minLength": "min_length",
    "maxLength": "max_length",
    "minItems": "min_items",
    "maxItems": "max_items",
    "pattern": "pattern",
    "multipleOf": "multiple_of",
}


def _day_schema(type_: Any) -> dict[str, Any]:
    if isinstance(type_, type) and issubclass(type_, Day):
        return {"type": "string", "format": "date"}
    raise NotImplementedError(type_)


def _fill(target: Schema, source: dict[str, Any]) -> None:
    """Gives ``target`` (Litestar's schema of a field) the constraints of ``source``
    (msgspec's) that it lacks. Litestar drops a ``Meta`` inside a union (``X | None``), a
    tuple or a dict; a type-specific keyword beside ``oneOf`` applies to that type only."""
    branches = [b for b in source.get("anyOf", [source]) if b.get("type") != "null"]
    for branch in branches:
        for key, attr in _CONSTRAINTS.items():
            if key in branch and getattr(target, attr) is None:
                setattr(target, attr, branch[key])
    if len(branches) != 1:
        return
    branch, node = branches[0], target
    inner = [s for s in target.one_of or [] if isinstance(s, Schema) and s.type != OpenAPIType.NULL]
    if len(inner) == 1 and target.items is None and target.additional_properties is None:
        node = inner[0]
    if isinstance(branch.get("items"), dict) and isinstance(node.items, Schema):
        _fill(node.items, branch["items"])
    for item, item_source in zip(
        node.prefix_items or [], branch.get("prefixItems", []), strict=False
    ):
        if isinstance(item, Schema):
            _fill(item, item_source)
    values = branch.get("additionalProperties")
    if isinstance(values, dict) and isinstance(node.additional_properties, Schema):
        _fill(node.additional_properties, values)
    names = branch.get("propertyNames")
    if isinstance(names, dict) and node.property_names is None:
        node.property_names = Schema(type=OpenAPIType.STRING)
        _fill(node.property_names, names)


def _fill_struct(component: Schema, struct: type[msgspec.Struct]) -> None:
    (_,), definitions = msgspec.json.schema_components([struct], schema_hook=_day_schema)
    fields = definitions[struct.__name__].get("properties", {})
    for name, schema in (component.properties or {}).items():
        if isinstance(schema, Schema) and name in fields:
            _fill(schema, fields[name])


def document_input_hygiene(app: Litestar) -> None:
    """Request schemas carry the rules the API enforces on every input, so a request the
    schema allows is not refused for a reason it hides: no control characters in any
    string (``api.hygiene``), no unknown field in a body that refuses them, and the page
    size of ``api.pagination``."""
    document = app.openapi_schema
    schemas = document.components.schemas or {}
    for handler, path, method in _operations(app):
        operation = getattr(document.paths[path], method, None) if document.paths else None
        for parameter in (operation.parameters or []) if operation else []:
            schema = getattr(parameter, "schema", None)
            if getattr(parameter, "param_in", None) not in ("path", "query"):
                continue
            _printable_strings(schema)
            if parameter.name == "limit" and isinstance(schema, Schema):
                schema.minimum, schema.maximum = 1, MAX_LIMIT
        body = getattr(operation, "request_body", None)
        for media in (getattr(body, "content", None) or {}).values():
            _printable_strings(media.schema)  # a body the route documents by hand
        field = handler.parsed_data_field
        if field is not None:
            for struct in _closed_structs(field.annotation):
                if isinstance(component := schemas.get(struct.__name__), Schema):
                    component.additional_properties = False
                    _fill_struct(component, struct)
    # Not the problem: it echoes what was refused, control characters included.
    for name, component in schemas.items():
        if name != PROBLEM:
            _printable_strings(component)
