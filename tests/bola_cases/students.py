from tests.bola import bola_case
from tests.factories import create_student


async def _student(tenant) -> str:
    return str((await create_student(tenant))["id"])


async def _deleted_student(tenant) -> str:
    s = await create_student(tenant)
    r = await tenant.client.delete(f"/api/v1/students/{s['id']}", headers=await tenant.headers())
    assert r.status_code == 204
    return str(s["id"])


bola_case("GET", "/api/v1/students/{id}")(_student)
bola_case(
    "PATCH", "/api/v1/students/{id}", json={"memo": "hijacked"}, read_path="/api/v1/students/{id}"
)(_student)
bola_case("DELETE", "/api/v1/students/{id}", read_path="/api/v1/students/{id}")(_student)
bola_case("POST", "/api/v1/students/{id}/restore")(_deleted_student)
