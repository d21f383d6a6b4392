"""A local PgBouncer in transaction pooling mode, in front of the embedded Postgres.

Started by the local runtime only when ``ACADEMY_PGBOUNCER=1`` (``just test-pgbouncer``,
or by hand for ``just dev``), so that the code paths production runs behind a pooler are
exercised here: every transaction may land on a different server connection, so nothing
may rely on session state (named prepared statements, session advisory locks, LISTEN,
plain ``SET``, temporary tables outliving a transaction).

Debian's ``pgbouncer`` package (1.18: no protocol-level prepared statements, hence the
statement cache is off behind it). It listens on its own free port on 127.0.0.1, trusts
local clients as the embedded Postgres does, and keeps its ini and auth file in a
directory of its own under the data directory. ``admin_show`` reads its admin console,
so a test can tell traffic really went through it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from ops.processes import die_with_parent, free_port, stop_server

ADMIN_DATABASE = "pgbouncer"
# pgserver runs Postgres as this user when started as root; PgBouncer refuses to run as root.
SERVER_USER_WHEN_ROOT = "pgserver"


def pgbouncer_binary() -> str | None:
    """Debian's ``pgbouncer`` (installed in /usr/sbin, often not on a user's PATH)."""
    return shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/sbin")


def _target(postgres_url: str) -> tuple[str, int, str, str]:
    """host (or socket directory), port, database and user of a Postgres URL."""
    parts = urlsplit(postgres_url)
    query = parse_qs(parts.query)
    host = query.get("host", [parts.hostname or "127.0.0.1"])[0]
    port = int(query.get("port", [parts.port or 5432])[0])
    database = unquote(parts.path.lstrip("/")) or "postgres"
    return host, port, database, unquote(parts.username or "postgres")


def _run_as() -> str:
    """PgBouncer refuses to run as root: as root, run it as the embedded Postgres's user."""
    if os.geteuid() != 0:
        return ""
    try:
        pwd.getpwnam(SERVER_USER_WHEN_ROOT)
    except KeyError:
        return "user = nobody\n"
    return f"user = {SERVER_USER_WHEN_ROOT}\n"


def write_config(postgres_url: str, port: int, directory: Path) -> Path:
    """The ini and auth file for a pooler on 127.0.0.1:``port`` in front of ``postgres_url``
    (same database name and user); returns the ini's path."""
    host, pg_port, database, user = _target(postgres_url)
    password = unquote(urlsplit(postgres_url).password or "")
    login = f" password='{password}'" if password else ""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)  # the ini may hold the server's password
    auth_file = directory / "userlist.txt"
    # Trust needs the user listed; the password field is unused.
    auth_file.write_text(f'"{user}" ""\n')
    ini = directory / "pgbouncer.ini"
    ini.write_text(
        f"""[databases]
{database} = host={host} port={pg_port} dbname={database} user={user}{login}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {auth_file}
admin_users = {user}
pool_mode = transaction
default_pool_size = 20
max_client_conn = 1000
logfile =
pidfile =
{_run_as()}"""
    )
    return ini


def start_pgbouncer(
    postgres_url: str, data_dir: Path, port: int | None = None, timeout: float = 15.0
) -> tuple[str, subprocess.Popen[bytes]]:
    """Start PgBouncer in front of ``postgres_url``, its files and log in ``data_dir``;
    return the pooled URL and the process (in the foreground: stopping it stops the pooler;
    ``ops.runtime`` watches it for a SIGKILLed owner)."""
    binary = pgbouncer_binary()
    if binary is None:
        raise RuntimeError("PgBouncer is not installed (Debian: apt-get install pgbouncer)")
    port = port or free_port()
    ini = write_config(postgres_url, port, data_dir / f"pgbouncer-{port}")
    log = open(data_dir / f"pgbouncer-{port}.log", "wb")  # noqa: SIM115 - owned by the child
    proc = subprocess.Popen(
        [binary, str(ini)],
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=die_with_parent,
        start_new_session=True,
    )
    _, _, database, user = _target(postgres_url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"PgBouncer exited; see {log.name}")
        try:
            admin_show(port, "VERSION", user=user)
            return f"postgresql://{user}@127.0.0.1:{port}/{database}", proc
        except OSError:
            time.sleep(0.1)
    stop_server(proc)
    raise RuntimeError(f"PgBouncer did not answer on 127.0.0.1:{port} within {timeout}s")


def admin_port(pooled_url: str) -> int:
    return int(urlsplit(pooled_url).port or 6432)


def admin_show(port: int, what: str, *, user: str = "postgres") -> list[dict[str, str]]:
    """``SHOW <what>`` on the admin console of the PgBouncer on 127.0.0.1:``port``: its rows
    as column -> text. The console speaks only the simple query protocol, which asyncpg
    does not expose for reading rows, hence this small client (trust auth only)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        params = f"user\0{user}\0database\0{ADMIN_DATABASE}\0\0".encode()
        sock.sendall(struct.pack("!ii", 8 + len(params), 196608) + params)
        _until_ready(sock)
        query = f"SHOW {what}\0".encode()
        sock.sendall(b"Q" + struct.pack("!i", 4 + len(query)) + query)
        return _until_ready(sock)


def _until_ready(sock: socket.socket) -> list[dict[str, str]]:
    """Read messages up to ReadyForQuery; the data rows seen on the way."""
    columns: list[str] = []
    found: list[dict[str, str]] = []
    while True:
        kind, body = _message(sock)
        if kind == b"E":
            raise OSError(f"PgBouncer refused: {body.decode(errors='replace')}")
        if kind == b"R" and struct.unpack("!i", body[:4])[0] != 0:
            raise OSError("PgBouncer asked for a password: its admin console needs trust auth")
        if kind == b"T":
            columns = [name.decode() for name in _row_description(body)]
        elif kind == b"D":
            found.append(dict(zip(columns, _data_row(body), strict=True)))
        elif kind == b"Z":
            return found


def _message(sock: socket.socket) -> tuple[bytes, bytes]:
    head = _read(sock, 5)
    return head[:1], _read(sock, struct.unpack("!i", head[1:])[0] - 4)


def _read(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise OSError("PgBouncer closed the connection")
        data += chunk
    return data


def _row_description(body: bytes) -> list[bytes]:
    (count,) = struct.unpack("!h", body[:2])
    names, at = [], 2
    for _ in range(count):
        end = body.index(b"\0", at)
        names.append(body[at:end])
        at = end + 1 + 18  # table oid, column, type oid, size, modifier, format
    return names


def _data_row(body: bytes) -> list[str]:
    (count,) = struct.unpack("!h", body[:2])
    values, at = [], 2
    for _ in range(count):
        (size,) = struct.unpack("!i", body[at : at + 4])
        at += 4
        values.append("" if size < 0 else body[at : at + size].decode())
        at += max(size, 0)
    return values
