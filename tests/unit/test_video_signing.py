"""Playback tokens: signing, verification and propagation into playlists."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from pipelines.video.signing import make_token, propagate_token, sign_url, verify

SECRET = "s3cret-for-tests"
KEYS = {"k1": SECRET}
NOW = 1_800_000_000


def _signed(path: str = "master.m3u8", ttl: int = 3600) -> tuple[str, dict[str, str]]:
    url, _ = sign_url(
        "https://cdn.example/hls", path, "tenant-a/video-1", secret=SECRET, kid="k1", ttl=ttl,
        now=NOW,
    )  # fmt: skip
    parts = urlsplit(url)
    return parts.path, dict(parse_qsl(parts.query))


def test_a_signed_url_verifies_for_every_file_under_its_prefix():
    path, query = _signed()
    assert path == "/hls/tenant-a/video-1/master.m3u8"
    assert query["pfx"] == "/hls/tenant-a/video-1/"
    assert int(query["exp"]) == NOW + 3600
    assert verify(path, query, keys=KEYS, now=NOW) is None
    # The same token opens the variants and segments of that video...
    for other in ("720p/index.m3u8", "720p/seg_00003.ts", "poster.jpg", "sprite_0.jpg"):
        assert verify(f"/hls/tenant-a/video-1/{other}", query, keys=KEYS, now=NOW) is None
    # ...and nothing else.
    assert verify("/hls/tenant-a/video-2/master.m3u8", query, keys=KEYS, now=NOW)
    assert verify("/hls/tenant-a/video-1/../video-2/master.m3u8", query, keys=KEYS, now=NOW)


def test_expired_and_tampered_tokens_are_refused():
    path, query = _signed(ttl=60)
    assert verify(path, query, keys=KEYS, now=NOW + 61) == "expired"
    for field, value in (
        ("sig", query["sig"][:-2] + ("AA" if not query["sig"].endswith("AA") else "BB")),
        ("exp", str(int(query["exp"]) + 3600)),
        ("pfx", "/hls/tenant-a/"),
    ):
        assert verify(path, {**query, field: value}, keys=KEYS, now=NOW) == "bad signature"
    assert verify(path, {**query, "kid": "k2"}, keys=KEYS, now=NOW) == "unknown key id"
    assert verify(path, {k: v for k, v in query.items() if k != "sig"}, keys=KEYS, now=NOW)
    assert verify(path, query, keys={"k1": "another secret"}, now=NOW) == "bad signature"
    # A token for one prefix signed over and reused for a wider one fails too.
    wide = make_token(SECRET, "k1", "/hls/", NOW + 10)
    assert verify(path, wide, keys=KEYS, now=NOW) is None  # a valid token for /hls/ itself
    assert verify(path, {**wide, "pfx": "/hls/tenant-a/video-1/"}, keys=KEYS, now=NOW)


def test_the_token_is_carried_into_playlists_and_thumbnail_tracks():
    _, query = _signed()
    master = (
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,RESOLUTION=640x360\n360p/index.m3u8\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=2\n720p/index.m3u8\n"
    )
    out = propagate_token(master, query).splitlines()
    assert out[0] == "#EXTM3U" and out[1].startswith("#EXT-X-STREAM-INF")
    for line in (out[2], out[4]):
        uri = urlsplit(line)
        assert dict(parse_qsl(uri.query)) == query
    vtt = "WEBVTT\n\n00:00:00.000 --> 00:00:05.000\nsprite_0.jpg#xywh=0,0,160,90\n"
    lines = propagate_token(vtt, query).splitlines()
    assert lines[2] == "00:00:00.000 --> 00:00:05.000"
    assert lines[3].startswith("sprite_0.jpg?") and lines[3].endswith("#xywh=0,0,160,90")
