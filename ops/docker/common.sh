# Sourced by build.sh and deploy.sh (after `cd` to the project root) so both agree on the
# flags, the image names and how a command is shown or run.
#
#   USAGE  the recipe named in the usage message, e.g. "just build"
#   "$@"   the script's own arguments; only --dry-run is known
DRY_RUN=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY_RUN=1 ;;
    *) echo "usage: $USAGE [--dry-run]" >&2; exit 2 ;;
  esac
done

TAG="${IMAGE_TAG:-$(git rev-parse --short HEAD 2>/dev/null || echo dev)}"
PREFIX="${IMAGE_PREFIX:-academy}"
ROLES=(video ai-cpu ai-gpu messaging)

run() {
  echo "+ $*"
  if [ "$DRY_RUN" = 0 ]; then "$@"; fi
}
