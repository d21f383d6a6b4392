"""The HTTP API (Litestar). ``api.app.create_app()`` builds it."""
