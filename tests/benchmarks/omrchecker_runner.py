"""Runs OMRChecker on folders of scans and prints its figures as one JSON line.

Run by the Python of OMRChecker's own venv (never the project's), pinned to one core by
the caller: ``python omrchecker_runner.py ANCHOR_DIR OUTPUT_DIR INPUT_DIR...``. Only the
processing of the folders is timed (not the interpreter's start or OMRChecker's imports).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path
from types import SimpleNamespace


def main() -> None:
    anchor, output, *inputs = sys.argv[1:]
    import screeninfo

    # OMRChecker asks for the screen's size when imported; a server has no screen.
    screeninfo.get_monitors = lambda: [SimpleNamespace(width=1920, height=1080, x=0, y=0)]
    sys.path.insert(0, anchor)
    from src.entry import entry_point

    args = {"debug": True, "output_dir": output, "autoAlign": False, "setLayout": False}
    sheets = sum(
        1
        for d in inputs
        for p in Path(d).iterdir()
        if p.suffix == ".jpg" and "marker" not in p.name
    )
    started = time.perf_counter()
    for folder in inputs:
        entry_point(Path(folder), args)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"sheets": sheets, "seconds": seconds, "peak_rss_mib": peak}))


if __name__ == "__main__":
    main()
