"""BOLA cases for videos (every id route of api/videos.py)."""

from __future__ import annotations

from pathlib import Path
from tempfile import TemporaryDirectory
from typing import TYPE_CHECKING

from tests.bola import bola_case
from tests.factories.lectures import create_lecture
from tests.factories.videos import create_video, make_video, mark_ready

if TYPE_CHECKING:
    from tests.conftest import TenantCtx

VIDEO = "/api/v1/videos/{id}"


async def _video(tenant: TenantCtx, *, uploaded: bool = False, ready: bool = False) -> str:
    headers = await tenant.headers()
    lecture = await create_lecture(tenant, headers)
    with TemporaryDirectory() as tmp:
        source = (
            make_video(Path(tmp) / "v.mp4", width=64, height=36, seconds=0.4, fps=5)
            if uploaded
            else None
        )
        created = await create_video(tenant, headers, lecture_id=lecture["id"], source=source)
    video_id = str(created["video"]["id"])
    if ready:
        await mark_ready(video_id)
    return video_id


@bola_case("GET", VIDEO)
async def _get(tenant: TenantCtx) -> str:
    return await _video(tenant)


@bola_case("PATCH", VIDEO, json={"due_date": "2026-12-01"})
async def _patch(tenant: TenantCtx) -> str:
    return await _video(tenant)


@bola_case("DELETE", VIDEO)
async def _delete(tenant: TenantCtx) -> str:
    return await _video(tenant, uploaded=True)


@bola_case("POST", f"{VIDEO}/complete", read_path=VIDEO)
async def _complete(tenant: TenantCtx) -> str:
    return await _video(tenant, uploaded=True)


@bola_case("GET", f"{VIDEO}/playback")
async def _playback(tenant: TenantCtx) -> str:
    return await _video(tenant, ready=True)


@bola_case("POST", f"{VIDEO}/progress", json={"position": 1.0, "played": [[0.0, 1.0]]})
async def _progress(tenant: TenantCtx) -> str:
    return await _video(tenant, ready=True)


@bola_case("GET", f"{VIDEO}/watch-report")
async def _report(tenant: TenantCtx) -> str:
    return await _video(tenant, ready=True)
