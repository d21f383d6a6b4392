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


async def test_a_started_api_has_its_heap_frozen(app, monkeypatch):
    # A full collection walking the app's start-up objects stopped the event loop for
    # 50–190 ms under load: the lifespan moves them out of the collector's reach.
    import contextlib
    import gc

    from api import app as app_module
    from api.app import _lifespan

    # Without a listener of its own: the caches it would connect and, at its end,
    # disconnect are the process's, which the test session's listener keeps.
    monkeypatch.setattr(app_module, "_listener", contextlib.nullcontext)
    gc.unfreeze()
    try:
        async with _lifespan(False)(app):
            assert gc.get_freeze_count() > 100_000
    finally:
        gc.unfreeze()
