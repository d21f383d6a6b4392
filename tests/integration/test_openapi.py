"""The OpenAPI document and its docs page: served offline, valid OpenAPI 3.1, and the bearer
requirement on exactly the operations that authenticate the caller. (That the page renders
in a browser: ``tests/e2e/test_openapi_ui_browser.py``.)"""

from __future__ import annotations

import re
import uuid
from typing import Any

from openapi_spec_validator import OpenAPIV31SpecValidator

from models.tables import JobStatus

PATH_PARAMETER = re.compile(r"\{[^}]+\}")
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
PUBLIC = {
    ("get", "/health"),
    ("get", "/metrics"),  # its own METRICS_TOKEN, or private networks only
    ("post", "/api/v1/auth/login"),
    ("post", "/api/v1/auth/refresh"),
    ("post", "/api/v1/auth/logout"),  # the refresh token in the body is the credential
    ("post", "/api/v1/messaging/webhooks/solapi"),  # signed by the provider
    ("post", "/api/v1/messaging/webhooks/console"),
}


def operations(spec: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method, path): item[method]
        for path, item in spec["paths"].items()
        for method in HTTP_METHODS
        if method in item
    }


async def test_openapi_ui_is_served_without_a_cdn(client):
    page = await client.get("/schema")
    assert page.status_code == 200
    assert "https://" not in page.text and "http://" not in page.text
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "swagger-ui-standalone-preset.js"):
        assert f"/schema/static/{asset}" in page.text
        r = await client.get(f"/schema/static/{asset}")
        assert r.status_code == 200 and len(r.content) > 10_000
    spec = (await client.get("/schema/openapi.json")).json()
    assert "/api/v1/auth/login" in spec["paths"] and "/health" in spec["paths"]


async def test_the_document_is_valid_openapi_3_1(client):
    spec = (await client.get("/schema/openapi.json")).json()
    assert spec["openapi"].startswith("3.1.")
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in OpenAPIV31SpecValidator(spec).iter_errors()
    ]
    assert not errors, "\n".join(errors)


async def test_operations_that_need_the_token_say_so(client):
    spec = (await client.get("/schema/openapi.json")).json()
    scheme = spec["components"]["securitySchemes"]["BearerAuth"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    ops = operations(spec)
    public = {key for key, op in ops.items() if not op.get("security")}
    assert public == PUBLIC
    assert all(
        op["security"] == [{"BearerAuth": []}] for key, op in ops.items() if key not in public
    )


async def test_marked_operations_refuse_a_call_without_the_token(client):
    spec = (await client.get("/schema/openapi.json")).json()
    refused = {}
    for (method, path), op in operations(spec).items():
        if op.get("security") and method == "get":
            url = PATH_PARAMETER.sub(str(uuid.uuid4()), path)
            refused[path] = (await client.get(url)).status_code
    assert len(refused) > 40 and set(refused.values()) == {401}, refused


SNAKE_CASE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)+$")


async def test_every_operation_has_a_unique_snake_case_id_and_a_tag(client):
    ops = operations((await client.get("/schema/openapi.json")).json())
    ids = [op.get("operationId", "") for op in ops.values()]
    assert [i for i in ids if not SNAKE_CASE.match(i)] == []
    assert len(set(ids)) == len(ids)
    assert [key for key, op in ops.items() if len(op.get("tags", [])) != 1] == []
    for op_id in ("students_list", "students_create", "students_get", "students_update"):
        assert op_id in ids
    assert all(op["operationId"].startswith(f"{op['tags'][0]}_") for op in ops.values())


async def test_every_error_answer_is_the_one_problem_schema(client):
    spec = (await client.get("/schema/openapi.json")).json()
    problem = spec["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail", "instance"}
    assert "/problems/validation" in problem["properties"]["type"]["examples"]
    assert "pattern" not in problem["properties"]["instance"]  # it echoes what was refused
    shared = spec["components"]["responses"]
    for (method, path), op in operations(spec).items():
        errors = {s: r for s, r in op["responses"].items() if s.startswith("4")}
        assert "400" in errors, (method, path)
        for status, response in errors.items():
            if "x-unstated-rules" in response:  # the operation's own 422, listing its rules
                assert status == "422" and response["x-unstated-rules"], (path, status)
                content = response["content"]
            else:
                ref = f"#/components/responses/Problem{status}"
                assert response == {"$ref": ref}, (path, status)
                content = shared[f"Problem{status}"]["content"]
            assert content == {
                "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
            }
        if op.get("security"):
            assert {"401", "403"} <= errors.keys(), (method, path)
        if "{" in path:
            assert "404" in errors, (method, path)
        if "requestBody" in op:
            assert {"413", "422"} <= errors.keys(), (method, path)


async def test_rules_the_schema_cannot_state_are_listed_on_the_422(tenant):
    """A refusal no JSON Schema can state (an unknown id, a cursor, a phone) is listed, by
    the field it names, on the operation's 422 answer, and the server names that field."""
    client, headers = tenant.client, await tenant.headers()
    spec = (await client.get("/schema/openapi.json")).json()
    listed = spec["paths"]["/api/v1/lectures"]["get"]["responses"]["422"]
    assert "cursor" in listed["x-unstated-rules"] and "`cursor`" in listed["description"]
    enrol = spec["paths"]["/api/v1/lectures/{lecture_id}/enrollments"]["post"]
    assert "student_id" in enrol["responses"]["422"]["x-unstated-rules"]
    # The shared 422 stays for operations with no such rule.
    get_one = spec["paths"]["/api/v1/students/{student_id}"]["get"]["responses"]["422"]
    assert get_one == {"$ref": "#/components/responses/Problem422"}

    bad_cursor = await client.get("/api/v1/lectures", params={"cursor": "x"}, headers=headers)
    assert bad_cursor.status_code == 422
    assert [e["field"] for e in bad_cursor.json()["errors"]] == ["cursor"]
    r = await client.post("/api/v1/lectures", json={"title": "수학"}, headers=headers)
    assert r.status_code == 201, r.text
    unknown = await client.post(
        f"/api/v1/lectures/{r.json()['id']}/enrollments",
        json={"student_id": str(uuid.uuid4())},
        headers=headers,
    )
    assert unknown.status_code == 422
    assert [e["field"] for e in unknown.json()["errors"]] == ["student_id"]


async def test_a_limit_the_deployment_sets_is_in_the_schema(tenant):
    from ops.settings import get_settings

    client, headers = tenant.client, await tenant.headers()
    spec = (await client.get("/schema/openapi.json")).json()
    size = spec["components"]["schemas"]["VideoCreate"]["properties"]["size_bytes"]
    limit = get_settings().video_max_upload_bytes
    assert size["maximum"] == limit
    lecture = await client.post("/api/v1/lectures", json={"title": "영상반"}, headers=headers)
    body = {"title": "1강", "filename": "a.mp4", "lecture_id": lecture.json()["id"]}
    r = await client.post("/api/v1/videos", json={**body, "size_bytes": limit + 1}, headers=headers)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "size_bytes"


async def test_links_lead_from_what_was_created_to_the_operations_on_it(client):
    spec = (await client.get("/schema/openapi.json")).json()
    schemas = spec["components"]["schemas"]
    by_id = {op["operationId"]: op for op in operations(spec).values()}
    create = spec["paths"]["/api/v1/students"]["post"]["responses"]["201"]["links"]
    assert create["students_get"]["parameters"] == {"student_id": "$response.body#/id"}
    exam = spec["paths"]["/api/v1/lectures/{lecture_id}/exams"]["post"]["responses"]["201"]
    assert exam["links"]["grades_get"]["parameters"] == {"exam_id": "$response.body#/id"}
    scans = spec["paths"]["/api/v1/exams/{exam_id}/scans"]["post"]["responses"]["202"]
    assert scans["links"]["jobs_get"]["parameters"] == {"job_id": "$response.body#/job_id"}
    followed = 0
    for (_, _), op in operations(spec).items():
        for response in op["responses"].values():
            for link in response.get("links", {}).values():
                target = by_id[link["operationId"]]
                names = {p["name"] for p in target.get("parameters", []) if p["in"] == "path"}
                body = response["content"]["application/json"]["schema"]
                for name, expression in link["parameters"].items():
                    assert name in names, (link, name)
                    # The pointer names a property of the answer's body.
                    node = schemas[body["$ref"].rsplit("/", 1)[-1]]
                    for part in expression.removeprefix("$response.body#/").split("/"):
                        prop = node["properties"][part]
                        ref = prop.get("$ref") or next(
                            (o["$ref"] for o in prop.get("oneOf", []) if "$ref" in o), None
                        )
                        node = schemas[ref.rsplit("/", 1)[-1]] if ref else prop
                    followed += 1
    assert followed > 50


async def test_documented_problems_are_what_the_server_answers(tenant):
    client, headers = tenant.client, await tenant.headers()
    spec = (await client.get("/schema/openapi.json")).json()
    op = spec["paths"]["/api/v1/students/{student_id}"]["get"]
    missing = await client.get(f"/api/v1/students/{uuid.uuid4()}", headers=headers)
    assert str(missing.status_code) in op["responses"]
    assert missing.headers["content-type"].startswith("application/problem+json")
    body = missing.json()
    problem = spec["components"]["schemas"]["Problem"]
    assert set(problem["required"]) <= body.keys()
    assert body["type"] in problem["properties"]["type"]["examples"]


async def test_options_allows_every_documented_method_of_the_path(tenant):
    headers = await tenant.headers()
    spec = (await tenant.client.get("/schema/openapi.json")).json()
    wrong = {}
    for path, item in spec["paths"].items():
        if not path.startswith("/api/v1/"):
            continue
        documented = {m.upper() for m in HTTP_METHODS if m in item} | {"OPTIONS"}
        url = PATH_PARAMETER.sub(str(uuid.uuid4()), path)
        r = await tenant.client.options(url, headers=headers)
        allowed = {m.strip() for m in r.headers.get("allow", "").split(",")}
        if allowed != documented:
            wrong[path] = (r.status_code, sorted(allowed), sorted(documented))
    assert wrong == {}


async def test_request_schemas_carry_the_limits_the_api_enforces(client):
    spec = (await client.get("/schema/openapi.json")).json()
    listing = spec["paths"]["/api/v1/students"]["get"]["parameters"]
    limit = next(p for p in listing if p["name"] == "limit")["schema"]
    assert (limit["minimum"], limit["maximum"]) == (1, 200)
    search = next(p for p in listing if p["name"] == "q")["schema"]["oneOf"][0]
    body = spec["components"]["schemas"]["StudentCreate"]
    assert body["additionalProperties"] is False
    for schema in (search, body["properties"]["name"]):
        assert re.search(schema["pattern"], "김민준 \t\n")
        assert not re.search(schema["pattern"], "a\x00b")


async def test_the_schema_states_the_handlers_rules_and_answers(client):
    """What the handlers refuse or answer is in the document: a generated client (or a
    fuzzer) that keeps to it is not refused for a reason it could not see."""
    spec = (await client.get("/schema/openapi.json")).json()
    schemas, paths = spec["components"]["schemas"], spec["paths"]
    title = schemas["LectureCreate"]["properties"]["title"]
    assert re.search(title["pattern"], " 수학 ") and not re.search(title["pattern"], " \t ")
    start = schemas["Slot"]["properties"]["start"]["pattern"]
    assert re.search(start, "09:30") and not re.search(start, "9:30")
    day = schemas["SessionCreate"]["properties"]["date"]["pattern"]
    assert re.search(day, "2026-03-01") and not re.search(day, "0098-01-09")
    assert schemas["Job"]["properties"]["status"]["enum"] == [s.value for s in JobStatus]
    enrol = paths["/api/v1/lectures/{lecture_id}/enrollments"]["post"]["responses"]
    assert {"200", "201"} <= enrol.keys()  # already enrolled / enrolled
    assert "415" in paths["/api/v1/enrollments/excel"]["post"]["responses"]
    scans = paths["/api/v1/exams/{exam_id}/scans"]["post"]["requestBody"]["content"]
    assert scans.keys() == {"multipart/form-data", "application/json"}
    # An SSE client reads events: their names, and JSON in ``data``.
    events = paths["/api/v1/jobs/{job_id}/events"]["get"]["responses"]["200"]["content"]
    ref = events["text/event-stream"]["schema"]["$ref"]
    event = schemas[ref.rsplit("/", 1)[1]]["properties"]
    assert event["event"]["enum"] == ["status", "stage", "progress", "done", "failed"]
    assert event["data"]["contentMediaType"] == "application/json"


async def test_constraints_inside_optional_fields_tuples_and_maps_are_kept(client):
    """Litestar drops a ``Meta`` inside ``X | None``, a tuple or a dict; the document
    takes them from msgspec's own schema of the body."""
    schemas = (await client.get("/schema/openapi.json")).json()["components"]["schemas"]
    assert schemas["ExamUpdate"]["properties"]["max_score"]["exclusiveMinimum"] == 0
    heartbeat = schemas["Heartbeat"]["properties"]
    assert heartbeat["seq"]["minimum"] == 0
    interval = heartbeat["played"]["items"]
    assert (interval["minItems"], interval["maxItems"]) == (2, 2)
    assert all(bound["minimum"] == 0 for bound in interval["prefixItems"])
    answers = schemas["ReviewIn"]["properties"]["answers"]
    assert answers["additionalProperties"]["maxLength"] == 100
    keys = answers["propertyNames"]
    assert keys["maxLength"] == 100 and not re.search(keys["pattern"], "q\x0b1")
