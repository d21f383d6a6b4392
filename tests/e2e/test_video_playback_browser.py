"""A real client: headless Chromium plays our HLS with hls.js through the signing edge
(``tests/playback/check_playback.py``, also ``just check-playback``). Skipped, saying why,
on a machine without Debian's ``chromium`` (under CI, which installs it, that fails) or
``npm``."""

from __future__ import annotations

import shutil

import pytest

from tests import chromium
from tests.playback import check_playback

pytestmark = [pytest.mark.usefixtures("provisioned"), pytest.mark.slow]


def test_chromium_plays_and_switches_rungs(tmp_path):
    chromium.require()
    if shutil.which("npm") is None and not check_playback.ensure_hlsjs():
        pytest.skip("needs npm to install hls.js")
    assert check_playback.main() == 0
