"""The images of ops/docker: one per worker role, each starting its own tier; built base
first; and compose.yaml validated by `docker compose config` where a compose binary exists."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from ops.commands.worker import GROUPS
from ops.settings import get_settings
from tests.conftest import ROOT

DOCKER = ROOT / "ops" / "docker"
ROLES = ("video", "ai-cpu", "ai-gpu", "messaging")


def test_every_worker_role_has_an_image_that_starts_its_tier() -> None:
    tiers = set(get_settings().queues) | set(GROUPS)
    for role in ROLES:
        text = (DOCKER / f"worker-{role}.Dockerfile").read_text()
        assert re.search(r"^FROM \$\{BASE_IMAGE\}$", text, re.MULTILINE)
        (cmd,) = re.findall(r"^CMD (.+)$", text, re.MULTILINE)
        started = re.search(r"python -m ops\.commands\.worker (\S+)", cmd)
        assert started and started.group(1) == role and role in tiers
        assert "STOPSIGNAL SIGTERM" in text


def test_base_image_copies_only_what_exists() -> None:
    text = (DOCKER / "base.Dockerfile").read_text()
    sources = [
        part
        for line in re.findall(r"^COPY (?!--from)(.+)$", text, re.MULTILINE)
        for part in line.split()[:-1]
    ]
    assert {"api", "actors", "models", "pipelines", "ops", "uv.lock"} <= set(sources)
    for source in sources:
        assert (ROOT / source).exists(), source
    assert "uv sync --frozen --no-dev" in text


def test_build_runs_base_then_api_then_each_worker() -> None:
    out = subprocess.run(
        ["bash", str(DOCKER / "build.sh"), "--dry-run"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "IMAGE_TAG": "t1"},
    ).stdout
    built = re.findall(r"^\+ docker build -f ops/docker/(\S+)\.Dockerfile", out, re.MULTILINE)
    assert built == ["base", "api", *(f"worker-{r}" for r in ROLES)]
    assert "--build-arg BASE_IMAGE=academy-base:t1" in out


def test_deploy_names_what_it_needs() -> None:
    r = subprocess.run(
        ["bash", str(DOCKER / "deploy.sh"), "--dry-run"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("DEPLOY_")},
    )
    assert r.returncode == 2 and "DEPLOY_REGISTRY" in r.stderr
    env = {
        **os.environ,
        "IMAGE_TAG": "t1",
        "DEPLOY_REGISTRY": "registry.example/academy",
        "DEPLOY_API_HOSTS": "api-1,api-2",
        "DEPLOY_WORKER_HOSTS": "w-1=ai-cpu w-2=video",
    }
    out = subprocess.run(
        ["bash", str(DOCKER / "deploy.sh"), "--dry-run"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout
    steps = [line for line in out.splitlines() if line.startswith("+ ")]
    migrate = [i for i, s in enumerate(steps) if "ops.commands.migrate" in s]
    assert len(migrate) == 1 and "api-1" in steps[migrate[0]], "migrations run once, from one place"
    api_runs = [i for i, s in enumerate(steps) if "docker run -d --name academy-api" in s]
    assert len(api_runs) == 2 and migrate[0] < api_runs[0]
    assert any("docker stop -t 600 academy-worker-ai-cpu" in s for s in steps)
    assert "registry.example/academy/academy-worker-video:t1" in out


def _compose() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


@pytest.mark.skipif(_compose() is None, reason="no compose binary on this machine")
def test_compose_file_is_valid() -> None:
    cmd = _compose()
    assert cmd is not None
    out = subprocess.run(
        [*cmd, "-f", str(ROOT / "compose.yaml"), "config", "--services"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    workers = {f"worker-{role}" for role in ROLES}
    assert {"postgres", "elasticmq", "minio", "migrate", "provision", "api"} | workers <= set(out)
