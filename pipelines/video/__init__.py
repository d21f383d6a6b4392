"""The lecture-video pipeline: probe, HLS ladder transcode, packaging, thumbnails, upload,
signed playback and watch progress.

Each step is a pure function over paths and small values, importable without a broker or a
web server, and idempotent (``ensure_*``): a step whose output is already complete in the
work directory does nothing, so a redelivered message repeats no work it finished.
"""
