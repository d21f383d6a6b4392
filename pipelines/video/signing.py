"""Signed HLS playback URLs: an HMAC path-prefix token in query parameters.

A token authorises every URL under one path prefix (``/hls/<tenant>/<video>/``) until it
expires, so one token issued for the master playlist covers its variant playlists,
segments, poster and thumbnails. Parameters::

    kid   CDN_HLS_SIGNING_KEY_ID (lets the secret rotate: the verifier picks the key)
    exp   expiry, Unix seconds
    pfx   the authorised path prefix
    sig   base64url(HMAC-SHA256(secret, "kid\\npfx\\nexp")), unpadded

Relative URIs in a playlist lose the query string when a player resolves them, so the
verifying edge (a CDN worker, or ``ops.commands.hls_server`` in development) rewrites each URI of a
playlist or WebVTT file it serves to carry the request's token (``propagate_token``);
the stored playlists stay token-free.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping
from urllib.parse import urlencode, urlsplit

TOKEN_PARAMS = ("kid", "exp", "pfx", "sig")
DEFAULT_TTL_SECONDS = 3600


def _sig(secret: str, kid: str, prefix: str, exp: int) -> str:
    mac = hmac.new(secret.encode(), f"{kid}\n{prefix}\n{exp}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()


def make_token(secret: str, kid: str, prefix: str, exp: int) -> dict[str, str]:
    if not prefix.startswith("/") or not prefix.endswith("/"):
        raise ValueError(f"a token prefix is an absolute path ending in '/': {prefix!r}")
    return {"kid": kid, "exp": str(exp), "pfx": prefix, "sig": _sig(secret, kid, prefix, exp)}


def sign_url(
    base_url: str,
    path_in_prefix: str,
    prefix_parts: str,
    *,
    secret: str,
    kid: str,
    ttl: int = DEFAULT_TTL_SECONDS,
    now: float | None = None,
) -> tuple[str, int]:
    """``base_url/prefix_parts/path_in_prefix?token`` and the token's expiry.

    The token's prefix is the URL path of ``base_url/prefix_parts/``.
    """
    base = base_url.rstrip("/")
    folder = f"{base}/{prefix_parts.strip('/')}/"
    prefix = urlsplit(folder).path
    exp = int((now if now is not None else time.time()) + ttl)
    token = make_token(secret, kid, prefix, exp)
    return f"{folder}{path_in_prefix.lstrip('/')}?{urlencode(token)}", exp


def verify(
    path: str,
    query: Mapping[str, str],
    *,
    keys: Mapping[str, str],
    now: float | None = None,
) -> str | None:
    """Why ``path`` with these query parameters is refused, or None when it is allowed.

    ``keys`` maps key ids to secrets (old ones stay during a rotation). Every refusal
    answers 403 at the edge; the reason is for logs only.
    """
    if any(not query.get(p) for p in TOKEN_PARAMS):
        return "missing token"
    kid, prefix, sig = query["kid"], query["pfx"], query["sig"]
    secret = keys.get(kid)
    if secret is None:
        return "unknown key id"
    try:
        exp = int(query["exp"])
    except ValueError:
        return "malformed expiry"
    if not hmac.compare_digest(_sig(secret, kid, prefix, exp), sig):
        return "bad signature"
    if exp < (now if now is not None else time.time()):
        return "expired"
    if ".." in path.split("/") or not path.startswith(prefix):
        return "path outside the token's prefix"
    return None


def token_query(query: Mapping[str, str]) -> str:
    return urlencode({p: query[p] for p in TOKEN_PARAMS})


def propagate_token(body: str, query: Mapping[str, str]) -> str:
    """Append the token to every relative URI in a playlist or WebVTT body.

    URI lines of a playlist (not ``#`` tags) and WebVTT cue payloads that name a file
    (``sprite_0.jpg#xywh=...``) get ``?<token>`` before any fragment.
    """
    token = token_query(query)
    out: list[str] = []
    for line in body.splitlines():
        stripped = line.strip()
        if (
            stripped
            and not stripped.startswith("#")
            and "://" not in stripped
            and "-->" not in stripped
            and stripped != "WEBVTT"
            and "." in stripped.split("#", 1)[0]
        ):
            path, hash_, fragment = stripped.partition("#")
            joiner = "&" if "?" in path else "?"
            line = f"{path}{joiner}{token}{hash_}{fragment}"
        out.append(line)
    return "\n".join(out) + ("\n" if body.endswith("\n") else "")
