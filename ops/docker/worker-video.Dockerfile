# syntax=docker/dockerfile:1.7
# Worker for the video tier: `python -m ops.commands.worker video PROCESSES THREADS`.
# PyAV ships its own FFmpeg (libx264, aac): nothing to install.
# SIGTERM (docker stop) is a graceful stop: running jobs finish, the rest return to SQS at
# once. Give it time: `docker stop -t 600`. With IDLE_STOP_MODE=ec2 the container needs
# IMDSv2 reachable (instance metadata hop limit 2, or host networking).
ARG BASE_IMAGE=academy-base:latest
FROM ${BASE_IMAGE}

ENV WORKER_PROCESSES=1 \
    WORKER_THREADS=4
STOPSIGNAL SIGTERM
CMD ["sh", "-c", "exec python -m ops.commands.worker video \"$WORKER_PROCESSES\" \"$WORKER_THREADS\""]
