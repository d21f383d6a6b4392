from tests.bola import bola_case


@bola_case("GET", "/api/v1/jobs/{id}/events")
async def _finished_job(tenant) -> str:
    """A finished probe job: its owner's stream sends the final event and ends at once."""
    from actors.jobs import submit
    from actors.system import PROBES
    from models.jobs import finish_job

    row = await submit(PROBES["video"], tenant_id=tenant.id, kind="probe")
    await finish_job(row.id, {"probe": True})
    return str(row.id)
