from tests.bola import bola_case


async def _staff_account(tenant) -> str:
    email = await tenant.add_user("staff")
    r = await tenant.client.get(
        "/api/v1/users", params={"role": "staff"}, headers=await tenant.headers()
    )
    return str(next(u["id"] for u in r.json()["items"] if u["email"] == email))


bola_case("PATCH", "/api/v1/users/{id}", json={"name": "hijacked"})(_staff_account)
bola_case("POST", "/api/v1/users/{id}/password", json={"password": "hijacked-pw-1"})(_staff_account)
