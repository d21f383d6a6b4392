async def test_health_ok(client):
    r = await client.get("/health")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ok" and body["database"] == "connected"


async def test_login_me(tenant):
    h = await tenant.headers()
    r = await tenant.client.get("/api/v1/auth/me", headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["tenant"]["slug"] == tenant.slug
