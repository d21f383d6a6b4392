"""The restart drill (`just drill`): start `just dev`, give every pipeline work, SIGKILL
everything mid-flight (database, queues, storage, API, scheduler, workers), start it again,
and check that every job ends DONE or FAILED with a reason, every READY video still plays,
and no message went out twice."""

from __future__ import annotations

import json
import os
import random
import shutil
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from ops.commands.dev import DEMO_EMAIL, DEMO_PASSWORD, DEMO_SLUG
from ops.runtime import DATA_DIR, free_port
from pipelines.omr.card import card_pdf, korean_card
from pipelines.video.package import parse_master_playlist, parse_media_playlist
from tests.conftest import TenantCtx, wait_for
from tests.dev_stack import DevStack
from tests.e2e.test_excel_e2e import upload
from tests.factories.grades import create_exam
from tests.factories.lectures import create_lecture
from tests.factories.omr_sheets import make_sheet, render_pages
from tests.factories.videos import create_video, make_video
from tests.factories.workbooks import messy_rows, with_problems, write_xlsx

pytestmark = pytest.mark.slow

PHONES = ("010-3000-0001", "010-3000-0002", "010-3000-0003")


async def _ok(r: httpx.Response, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json()


async def video(t: TenantCtx, lecture: dict[str, Any], source: Path) -> str:
    created = await create_video(
        t, await t.headers(), lecture_id=lecture["id"], source=source, complete=True
    )
    return str(created["completed"]["job_id"])


async def omr_scans(t: TenantCtx, lecture: dict[str, Any], h: dict[str, str]) -> str:
    key = {str(q): [str(q % 5 + 1)] for q in range(1, 11)}
    exam = await create_exam(t, lecture["id"], h, question_count=10, answer_key=key)
    card = await _ok(
        await t.client.post(
            "/api/v1/omr/templates/builtin", json={"name": "drill", "questions": 10}, headers=h
        ),
        201,
    )
    await _ok(
        await t.client.put(
            f"/api/v1/exams/{exam['id']}/omr", json={"template_id": card["id"]}, headers=h
        )
    )
    template = korean_card(questions=10)
    rng = random.Random(18)
    sheets = [make_sheet(template, rng, student=f"3000000{n}", difficulty=0) for n in (1, 2)]
    pdf = card_pdf(template, render_pages(template, sheets))
    accepted = await _ok(
        await t.client.post(
            f"/api/v1/exams/{exam['id']}/scans",
            files=[("files", ("drill.pdf", pdf, "application/pdf"))],
            headers=h,
        ),
        202,
    )
    return str(accepted["job_id"])


async def messages(t: TenantCtx, h: dict[str, str]) -> str:
    await _ok(
        await t.client.post(
            "/api/v1/messaging/senders", json={"phone": "01020003000", "label": "대표"}, headers=h
        ),
        201,
    )
    template = await _ok(
        await t.client.post(
            "/api/v1/messaging/templates", json={"code": "drill", "body": "휴원 안내"}, headers=h
        ),
        201,
    )
    target = {"recipients": [{"phone": p} for p in PHONES]}
    sent = await _ok(
        await t.client.post(
            "/api/v1/messaging/send",
            json={"template_id": template["id"], "target": target},
            headers=h,
        ),
        202,
    )
    return str(sent["job_id"])


async def give_every_pipeline_work(t: TenantCtx, workdir: Path) -> dict[str, str]:
    """The jobs started, by pipeline; one video is READY before the others start, and the
    last one (a longer video) is still transcoding when the work is all in."""
    h = await t.headers()
    lecture = await create_lecture(t, h)
    short = make_video(workdir / "short.mp4", width=640, height=360, seconds=6, fps=10)
    longer = make_video(workdir / "longer.mp4", width=1280, height=720, seconds=60, fps=10)
    jobs = {"video (ready before)": await video(t, lecture, short)}
    assert await job_ends(t, jobs["video (ready before)"]) == "DONE"
    jobs["excel import"] = await upload(t, write_xlsx(with_problems(messy_rows(8, seed=18))))
    exported = await _ok(await t.client.post("/api/v1/exports/students", headers=h), 202)
    jobs["export"] = str(exported["job_id"])
    jobs["omr"] = await omr_scans(t, lecture, h)
    jobs["messaging"] = await messages(t, h)
    jobs["video"] = await video(t, lecture, longer)
    return jobs


async def job_ends(t: TenantCtx, job_id: str, timeout: float = 120) -> str:
    h = await t.headers()

    async def ended() -> str | None:
        job = await _ok(await t.client.get(f"/api/v1/jobs/{job_id}", headers=h))
        return str(job["status"]) if job["status"] in ("DONE", "FAILED") else None

    return str(await wait_for(ended, timeout=timeout, interval=0.5))


async def plays(t: TenantCtx, video_id: Any) -> None:
    """The signed master playlist, its first variant and that variant's first segment."""
    h = await t.headers()
    playback = await _ok(await t.client.get(f"/api/v1/videos/{video_id}/playback", headers=h))
    async with httpx.AsyncClient(timeout=30) as http:
        master = await http.get(playback["master_url"])
        assert master.status_code == 200, master.text
        variants = parse_master_playlist(master.text)
        variant_url = str(httpx.URL(playback["master_url"]).join(variants[0]["URI"]))
        variant = await http.get(variant_url)
        assert variant.status_code == 200, variant.text
        first = parse_media_playlist(variant.text).segments[0].uri
        segment = await http.get(str(httpx.URL(variant_url).join(first)))
        assert segment.status_code == 200 and segment.content[:1] == b"\x47"  # MPEG-TS sync


async def test_restart_drill(tmp_path: Path) -> None:
    data_dir = DATA_DIR / f"drill-{os.getpid()}"
    outbox = data_dir / "messages-outbox.jsonl"
    dev = DevStack(
        data_dir,
        free_port(),
        tmp_path / "dev.log",
        # Lost messages come back quickly: a job silent for 6 s (visibility) + 4 s is lost.
        JOB_LIFELINE_MARGIN_SECONDS="4",
        MESSAGING_CONSOLE_OUTBOX=str(outbox),
        MESSAGING_SEND_LEASE_SECONDS="7",
    )
    dev.env.pop("CDN_HLS_BASE_URL", None)  # `just dev` serves HLS through its own edge
    api = f"http://127.0.0.1:{dev.env['PORT']}"
    try:
        dev.start()
        async with httpx.AsyncClient(base_url=api, timeout=60) as client:
            t = TenantCtx(None, DEMO_SLUG, DEMO_EMAIL, DEMO_PASSWORD, client)
            jobs = await give_every_pipeline_work(t, tmp_path)
            video_job = jobs["video"]
            h = await t.headers()

            async def running() -> bool:
                job = await _ok(await client.get(f"/api/v1/jobs/{video_job}", headers=h))
                return bool(job["status"] == "RUNNING")

            assert await wait_for(running, timeout=60), dev.text()[-4000:]
        dev.kill9_everything()
        print(f"killed mid-flight: {jobs}")

        dev.start()
        db = await asyncpg.connect(dev.runtime_env()["DATABASE_URL"])
        try:

            async def all_ended() -> list[Any] | None:
                rows = await db.fetch("SELECT id, kind, status, error, lifeline_resends FROM job")
                return rows if all(r["status"] in ("DONE", "FAILED") for r in rows) else None

            rows = await wait_for(all_ended, timeout=300, interval=1)
            rows = rows or await db.fetch(
                "SELECT id, kind, status, error, lifeline_resends FROM job"
            )
            for r in rows:
                print(
                    f"  {r['kind']:16} {r['status']:7} re-sent {r['lifeline_resends']}"
                    f" {r['error'] or ''}"
                )
            assert all(r["status"] in ("DONE", "FAILED") for r in rows), dev.text()[-6000:]
            assert all(r["error"] for r in rows if r["status"] == "FAILED")
            by_id = {str(r["id"]): r for r in rows}
            assert set(jobs.values()) <= set(by_id)
            # Its message died with the queue server: only the lifeline brought it back.
            assert by_id[jobs["video"]]["lifeline_resends"] >= 1
            ready = await db.fetch("SELECT id FROM video WHERE status = 'READY'")
            message_rows = await db.fetchval(
                "SELECT count(*) FROM message WHERE job = $1", uuid.UUID(jobs["messaging"])
            )
        finally:
            await db.close()

        async with httpx.AsyncClient(base_url=api, timeout=60) as client:
            t = TenantCtx(None, DEMO_SLUG, DEMO_EMAIL, DEMO_PASSWORD, client)
            assert ready, "no video is READY"
            for v in ready:
                await plays(t, v["id"])

        sent = [json.loads(line) for line in outbox.read_text().splitlines() if line.strip()]
        twice = [k for k, n in Counter(m["key"] for m in sent).items() if n > 1]
        assert not twice, f"sent twice: {twice}"
        if by_id[jobs["messaging"]]["status"] == "DONE":
            assert len(sent) == message_rows == len(PHONES)
        assert dev.interrupt() == 0
    finally:
        dev.close()
        shutil.rmtree(data_dir, ignore_errors=True)
