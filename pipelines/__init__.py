"""Pure domain logic, importable without a broker or a web server."""
