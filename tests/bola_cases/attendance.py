"""Attendance routes in the BOLA matrix. The single check is addressed by two ids (session,
student): its factory returns both, in path order (see ``tests/bola.py``)."""

from tests.bola import bola_case
from tests.factories.attendance import create_class

SHEET = "/api/v1/sessions/{id}/attendance"


async def _session(tenant) -> str:
    return str((await create_class(tenant, students=2)).sessions[0])


async def _session_and_student(tenant) -> dict[str, str]:
    klass = await create_class(tenant, students=2)
    return {"session_id": str(klass.sessions[0]), "student_id": str(klass.students[0])}


async def _lecture(tenant) -> str:
    return str((await create_class(tenant, students=2, sessions=2)).lecture)


bola_case("GET", SHEET)(_session)
# An empty bulk is valid (it changes nothing); the other tenant must still get the 404.
bola_case("PUT", SHEET, json={"items": []}, read_path=SHEET)(_session)
bola_case("PUT", SHEET + "/{id}", json={"status": "absent", "note": "hijacked"}, read_path=SHEET)(
    _session_and_student
)
bola_case("GET", "/api/v1/lectures/{id}/attendance/report")(_lecture)
