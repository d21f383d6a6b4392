"""The project against OMRChecker, side by side in one run, on the same 300 dpi scans.

Two sheet designs of OMRChecker's samples that align on their printed markers
(``CropOnMarkers``: sample5 and UmarFarootAPS), each scan enlarged to 300 dpi letter
width (2550 px wide, aspect kept) and written as JPEG, several copies of each. Both
sides read every page whole: OMRChecker with its own venv (``main.py``'s entry point,
its CSVs and checked images), the project with its worker's work (align in the right
orientation, read, student number, score, annotated PNG). Each runs in its own process
pinned to one core (``taskset -c 0``), in turns (ours, theirs, ours, theirs); the figures
of every run are printed, and the ratio of the medians. Nothing is asserted.

OMRChecker's venv is ``.bench/omrchecker-venv`` (or ``OMRCHECKER_VENV``); it is made with
uv from OMRChecker's ``requirements.txt`` and ``opencv-python-headless`` when missing.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import pytest

from tests.conftest import OMRCHECKER_FIXTURES, ROOT

ANCHOR = Path(
    os.environ.get("OMRCHECKER_ANCHOR", ROOT.parent / "shared" / "anchors" / "OMRChecker")
)
VENV = Path(os.environ.get("OMRCHECKER_VENV", ROOT / ".bench" / "omrchecker-venv"))
SAMPLES = OMRCHECKER_FIXTURES / "samples"
DESIGNS = {
    "sample5": (
        SAMPLES / "sample5",
        ["ScanBatch1/camscanner-1.jpg", "ScanBatch2/camscanner-2.jpg"],
    ),
    "UmarFarootAPS": (
        SAMPLES / "community" / "UmarFarootAPS",
        ["scans/scan-type-1.jpg", "scans/scan-type-2.jpg"],
    ),
}
COPIES = 6
WIDTH_300_DPI = 2550  # 8.5 in


def _venv_python() -> Path:
    python = VENV / "bin" / "python"
    if not python.exists():
        uv = shutil.which("uv")
        if uv is None:
            pytest.skip("uv is needed to make OMRChecker's venv")
        subprocess.run([uv, "venv", "-q", "-p", "3.11", str(VENV)], check=True)
        subprocess.run(
            [
                uv,
                "pip",
                "install",
                "-q",
                "-p",
                str(python),
                "-r",
                str(ANCHOR / "requirements.txt"),
                "opencv-python-headless",
            ],
            check=True,
        )
    return python


def _prepare(work: Path) -> list[Path]:
    """One folder per design: its template, config (pictures neither shown nor saved
    beyond OMRChecker's defaults), marker, key, and the enlarged scans."""
    folders = []
    for name, (source, scans) in DESIGNS.items():
        folder = work / name
        folder.mkdir()
        for extra in ("template.json", "omr_marker.jpg", "evaluation.json", "answer_key.csv"):
            if (source / extra).exists():
                shutil.copy(source / extra, folder / extra)
        config = json.loads((source / "config.json").read_text())
        config["outputs"] = {"show_image_level": 0, "save_image_level": 0}
        (folder / "config.json").write_text(json.dumps(config))
        for scan in scans:
            image = cv2.imread(str(source / scan))
            height = round(image.shape[0] * WIDTH_300_DPI / image.shape[1])
            big = cv2.resize(image, (WIDTH_300_DPI, height), interpolation=cv2.INTER_CUBIC)
            for n in range(COPIES):
                cv2.imwrite(
                    str(folder / f"{Path(scan).stem}-{n}.jpg"), big, [cv2.IMWRITE_JPEG_QUALITY, 90]
                )
        folders.append(folder)
    return folders


def _run(command: list[str], cwd: Path) -> dict[str, Any]:
    done = subprocess.run(
        ["taskset", "-c", "0", *command], cwd=cwd, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_bench_omr_side_by_side_with_omrchecker(tmp_path: Path) -> None:
    if not (ANCHOR / "main.py").exists() or not SAMPLES.exists():
        pytest.skip("OMRChecker (shared/anchors) or its samples (shared/fixtures) not present")
    if shutil.which("taskset") is None:
        pytest.skip("taskset (util-linux) is needed to pin both sides to one core")
    theirs_python = _venv_python()
    folders = _prepare(tmp_path)
    ours_cmd = [sys.executable, "-m", "tests.benchmarks.omr_runner", *map(str, folders)]
    runner = Path(__file__).with_name("omrchecker_runner.py")
    theirs_cmd = [
        str(theirs_python),
        str(runner),
        str(ANCHOR),
        str(tmp_path / "out"),
        *map(str, folders),
    ]
    runs: dict[str, list[dict[str, Any]]] = {"ours": [], "OMRChecker": []}
    for _ in range(2):
        runs["ours"].append(_run(ours_cmd, ROOT))
        runs["OMRChecker"].append(_run(theirs_cmd, tmp_path))
    print()
    sheets = runs["ours"][0]["sheets"]
    print(
        f"OMR side by side, one core each, {sheets} scans of 2 designs at 2550 px wide (300 dpi):"
    )
    rates: dict[str, float] = {}
    for side, results in runs.items():
        per_run = [r["sheets"] / r["seconds"] * 60 for r in results]
        rates[side] = statistics.median(per_run)
        peak = max(r["peak_rss_mib"] for r in results)
        figures = ", ".join(f"{x:.0f}" for x in per_run)
        print(
            f"  {side:10s} {rates[side]:7.1f} sheets/min (runs: {figures})  peak RSS {peak:.0f} MiB"
        )
    print(
        f"  ratio (ours / OMRChecker): {rates['ours'] / rates['OMRChecker']:.2f}x  (target >= 2x)"
    )
