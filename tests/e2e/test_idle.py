"""Idle shutdown through the real path: dramatiq CLI workers long-polling the local SQS
server. The long poll (SQS_WAIT_TIME_SECONDS=1 in tests) and the threshold are small so a
worker goes idle in seconds; production runs 20 s x 5."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from actors.jobs import submit
from ops.commands.worker import queues_for
from tests import actors as test_actors
from tests.conftest import ROOT, wait_for
from tests.idle_helpers import FakeAws, assert_stopped_exactly_once, events, exited, names
from tests.sqs_helpers import counts

pytestmark = [pytest.mark.usefixtures("broker"), pytest.mark.slow]

EXIT_ENV = {"IDLE_STOP_MODE": "exit", "EC2_IDLE_STOP_THRESHOLD": "3"}


def _done(job_id: Any) -> Any:
    async def check() -> dict[str, Any] | None:
        row = await test_actors.job_row(job_id)
        return row if row and row["status"] in ("DONE", "FAILED") else None

    return check


async def test_idle_worker_stops_its_instance_after_the_threshold(lite_queue, start_worker):
    with FakeAws() as fake:
        worker = start_worker(
            ["ai-lite"],
            env={"IDLE_STOP_MODE": "ec2", "EC2_IDLE_STOP_THRESHOLD": "3", **fake.env()},
        )
        assert await wait_for(exited(worker.proc), timeout=90), worker.output()[-3000:]
        out = worker.output()
        assert worker.proc.returncode == 0, out[-3000:]
        assert_stopped_exactly_once(fake)
    seen = names(out)
    assert seen.count("IDLE_SHUTDOWN") == 1
    countdown = [e["empty_polls"] for e in events(out) if e["event"] == "IDLE_COUNTDOWN"]
    assert countdown[-1] == 3 and countdown == sorted(countdown)
    # Graceful first, then the instance.
    assert seen.index("IDLE_SHUTDOWN") < seen.index("Graceful shutdown")
    assert seen.index("Graceful shutdown") < seen.index("IDLE_INSTANCE_STOPPED")
    assert counts(lite_queue) == {"visible": 0, "in_flight": 0, "delayed": 0}


async def test_busy_worker_does_not_stop_until_its_job_is_done(tenant, lite_queue, start_worker):
    # The job runs for twice the idle threshold (3 polls of 1 s).
    job = await submit(test_actors.sleep, tenant_id=tenant.id, kind="test", seconds=6)
    worker = start_worker(["ai-lite"], env=EXIT_ENV)
    assert await wait_for(exited(worker.proc), timeout=90), worker.output()[-3000:]
    out = worker.output()
    assert worker.proc.returncode == 0, out[-3000:]
    row = await test_actors.job_row(job.id)
    assert row and row["status"] == "DONE" and row["attempts"] == 1, out[-3000:]
    seen = names(out)
    assert seen.index("SQS_JOB_COMPLETED") < seen.index("IDLE_SHUTDOWN")
    # While the job ran the countdown stood at zero.
    during = events(out)[seen.index("SQS_MESSAGE_RECEIVED") : seen.index("SQS_JOB_COMPLETED")]
    assert all(e["empty_polls"] == 0 for e in during if e["event"] == "IDLE_COUNTDOWN")
    assert counts(lite_queue) == {"visible": 0, "in_flight": 0, "delayed": 0}


async def test_messages_during_the_countdown_reset_it_and_none_is_stranded(
    tenant, lite_queue, start_worker
):
    worker = start_worker(
        ["ai-lite"], env={"IDLE_STOP_MODE": "exit", "EC2_IDLE_STOP_THRESHOLD": "4"}
    )

    async def counting() -> bool:
        return any(
            e["event"] == "IDLE_COUNTDOWN" and e["empty_polls"] >= 2
            for e in events(worker.output())
        )

    assert await wait_for(counting, timeout=60), worker.output()[-3000:]
    assert worker.proc.poll() is None
    jobs = [
        await submit(test_actors.sleep, tenant_id=tenant.id, kind="test", seconds=0.2)
        for _ in range(5)
    ]
    assert await wait_for(exited(worker.proc), timeout=90), worker.output()[-3000:]
    out = worker.output()
    assert worker.proc.returncode == 0, out[-3000:]
    for job in jobs:
        row = await test_actors.job_row(job.id)
        assert row and row["status"] == "DONE", out[-3000:]
    seen = names(out)
    last_done = len(seen) - 1 - seen[::-1].index("SQS_JOB_COMPLETED")
    after = [e["empty_polls"] for e in events(out)[last_done:] if e["event"] == "IDLE_COUNTDOWN"]
    # Counted again from the start after the last job, up to the threshold.
    assert after[0] <= 1 and after[-1] == 4, after
    assert seen.count("IDLE_SHUTDOWN") == 1
    assert counts(lite_queue) == {"visible": 0, "in_flight": 0, "delayed": 0}


def spawn_workers(processes: int, log_path: Path) -> subprocess.Popen[bytes]:
    """``dramatiq -p N`` on the ai-lite queue, its output in ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "dramatiq", "actors.worker", "--processes", str(processes)]
    cmd += ["--threads", "1", "--queues", *queues_for("ai-lite")]
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            cmd,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **EXIT_ENV},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def read_log(path: Path) -> str:
    return path.read_text(errors="replace")


async def test_two_processes_stop_once_and_exit_zero(tenant, lite_queue):
    log_path = ROOT / ".data" / f"worker-p2-{os.getpid()}-{secrets.token_hex(3)}.log"
    proc = spawn_workers(2, log_path)
    try:
        # Some work first, so both processes have had something to do.
        jobs = [
            await submit(test_actors.sleep, tenant_id=tenant.id, kind="test", seconds=0.3)
            for _ in range(4)
        ]
        assert await wait_for(exited(proc), timeout=120), read_log(log_path)[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    out = read_log(log_path)
    assert proc.returncode == 0, out[-3000:]
    seen = names(out)
    assert seen.count("IDLE_SHUTDOWN") == 1, out[-3000:]
    assert seen.count("Graceful shutdown") == 2
    assert "Killing worker process" not in out
    for job in jobs:
        row = await test_actors.job_row(job.id)
        assert row and row["status"] == "DONE"
    assert counts(lite_queue) == {"visible": 0, "in_flight": 0, "delayed": 0}
