#!/usr/bin/env bash
# Build the images in the seed's order: base, then the API, then one image per worker role.
#
#   IMAGE_TAG     tag for every image (default: the short git commit, "dev" outside git)
#   IMAGE_PREFIX  image name prefix (default: academy) -> academy-base, academy-api, ...
#   --dry-run     print the docker commands instead of running them
set -euo pipefail
cd "$(dirname "$0")/../.."

USAGE="just build"
# shellcheck source=ops/docker/common.sh
source ops/docker/common.sh

if [ "$DRY_RUN" = 0 ] && ! command -v docker >/dev/null; then
  echo "docker is not installed; \`just build --dry-run\` shows what would run" >&2
  exit 1
fi

export DOCKER_BUILDKIT=1
run docker build -f ops/docker/base.Dockerfile -t "$PREFIX-base:$TAG" .
run docker build -f ops/docker/api.Dockerfile --build-arg "BASE_IMAGE=$PREFIX-base:$TAG" \
  -t "$PREFIX-api:$TAG" .
for role in "${ROLES[@]}"; do
  run docker build -f "ops/docker/worker-$role.Dockerfile" --build-arg "BASE_IMAGE=$PREFIX-base:$TAG" \
    -t "$PREFIX-worker-$role:$TAG" .
done
echo "built tag $TAG: $PREFIX-base $PREFIX-api ${ROLES[*]/#/$PREFIX-worker-}"
