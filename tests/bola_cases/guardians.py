from tests.bola import bola_case
from tests.factories import create_student


async def _guardian(tenant) -> str:
    student = await create_student(tenant)
    return str(student["guardians"][0]["id"])


bola_case("GET", "/api/v1/guardians/{id}")(_guardian)
bola_case(
    "PATCH", "/api/v1/guardians/{id}", json={"name": "hijacked"}, read_path="/api/v1/guardians/{id}"
)(_guardian)
bola_case("GET", "/api/v1/guardians/{id}/students")(_guardian)
