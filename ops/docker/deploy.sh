#!/usr/bin/env bash
# Deploy: build, push, migrate (once, from one place), provision, rolling restart (each API
# host runs the API and a scheduler), readiness.
#
# From the environment:
#   DEPLOY_REGISTRY      registry to push to, e.g. 123456789012.dkr.ecr.ap-northeast-2.amazonaws.com
#   DEPLOY_API_HOSTS     API hosts, space- or comma-separated (restarted one at a time; the
#                        first also runs migrate, provision and readiness)
#   DEPLOY_WORKER_HOSTS  worker hosts as host=role (role: video, ai-cpu, ai-gpu, messaging)
#   DEPLOY_SSH_USER      ssh user (default: ec2-user)
#   DEPLOY_ENV_FILE      env file on every host (default: /etc/academy/academy.env)
#   IMAGE_TAG / IMAGE_PREFIX as for `just build`
#   --dry-run            print every command instead of running it
#
# Workers are stopped with `docker stop -t 600`: one SIGTERM, running jobs finish, the rest
# return to SQS at once. A worker host that is stopped (idle shutdown) is skipped: its unit
# pulls the ":current" tag when it next starts.
set -euo pipefail
cd "$(dirname "$0")/../.."

USAGE="just deploy"
# shellcheck source=ops/docker/common.sh
source ops/docker/common.sh

need() { [ -n "${!1:-}" ] || { echo "deploy: set $1 ($2)" >&2; exit 2; }; }
need DEPLOY_REGISTRY "the registry images are pushed to"
need DEPLOY_API_HOSTS "the API hosts"
need DEPLOY_WORKER_HOSTS "worker hosts as host=role"

REG="${DEPLOY_REGISTRY%/}"
SSH_USER="${DEPLOY_SSH_USER:-ec2-user}"
ENV_FILE="${DEPLOY_ENV_FILE:-/etc/academy/academy.env}"
read -r -a API_HOSTS <<<"${DEPLOY_API_HOSTS//,/ }"
read -r -a WORKERS <<<"${DEPLOY_WORKER_HOSTS//,/ }"

on() {  # on HOST COMMAND...
  local host="$1"; shift
  run ssh -o BatchMode=yes -o ConnectTimeout=10 "$SSH_USER@$host" "$*"
}
image() { echo "$REG/$PREFIX-$1:$TAG"; }

echo "== build $TAG"
if [ "$DRY_RUN" = 1 ]; then bash ops/docker/build.sh --dry-run; else bash ops/docker/build.sh; fi

echo "== push to $REG"
for name in api "${ROLES[@]/#/worker-}"; do
  run docker tag "$PREFIX-$name:$TAG" "$(image "$name")"
  run docker push "$(image "$name")"
  run docker tag "$PREFIX-$name:$TAG" "$REG/$PREFIX-$name:current"
  run docker push "$REG/$PREFIX-$name:current"
done

first="${API_HOSTS[0]}"
echo "== migrate and provision (once, on $first)"
on "$first" docker pull "$(image api)"
on "$first" docker run --rm --env-file "$ENV_FILE" "$(image api)" python -m ops.commands.migrate
on "$first" docker run --rm --env-file "$ENV_FILE" "$(image api)" python -m ops.commands.provision

echo "== rolling restart: API and its scheduler"
for host in "${API_HOSTS[@]}"; do
  on "$host" docker pull "$(image api)"
  on "$host" "docker rm -f academy-api >/dev/null 2>&1 || true"
  on "$host" docker run -d --name academy-api --restart unless-stopped --env-file "$ENV_FILE" \
    -p 8000:8000 "$(image api)"
  # The next host only once this one answers /health.
  on "$host" "for i in \$(seq 60); do curl -fsS http://127.0.0.1:8000/health >/dev/null && exit 0; sleep 2; done; exit 1"
  # The background rounds, one scheduler per API host: each round takes an advisory lock,
  # so the hosts never run the same round twice, and any one of them keeps them going.
  on "$host" "docker stop academy-scheduler >/dev/null 2>&1 || true; docker rm academy-scheduler >/dev/null 2>&1 || true"
  on "$host" docker run -d --name academy-scheduler --restart unless-stopped --env-file "$ENV_FILE" \
    "$(image api)" python -m ops.commands.scheduler
done

echo "== rolling restart: workers"
skipped=()
for entry in "${WORKERS[@]}"; do
  host="${entry%%=*}"; role="${entry#*=}"
  [[ " ${ROLES[*]} " == *" $role "* ]] || { echo "unknown role in $entry" >&2; exit 2; }
  if [ "$DRY_RUN" = 0 ] && ! ssh -o BatchMode=yes -o ConnectTimeout=10 "$SSH_USER@$host" true 2>/dev/null; then
    skipped+=("$entry"); continue
  fi
  on "$host" docker pull "$(image "worker-$role")"
  on "$host" "docker stop -t 600 academy-worker-$role >/dev/null 2>&1 || true; docker rm academy-worker-$role >/dev/null 2>&1 || true"
  on "$host" docker run -d --name "academy-worker-$role" --restart on-failure --env-file "$ENV_FILE" \
    --stop-timeout 600 "$(image "worker-$role")"
done
if [ "${#skipped[@]}" -gt 0 ]; then
  echo "not reachable (stopped when idle?), will start on :current: ${skipped[*]}"
fi

echo "== readiness"
on "$first" docker run --rm --env-file "$ENV_FILE" "$(image api)" python -m ops.commands.readiness
echo "deployed $TAG"
