#!/usr/bin/env bash
# `just client [URL]`: install the pinned npm packages (again only when package-lock.json
# changed), then write generated/academy.d.ts from the OpenAPI document of the API at URL
# (default: the one `just dev` runs). With no URL given and no API answering there, the
# document is asked of the application itself, without a server.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
given="${1:-}"
url="${given:-http://127.0.0.1:${PORT:-8000}}"
url="${url%/}/schema/openapi.json"

if ! command -v npm >/dev/null 2>&1; then
  echo "just client needs Node.js 20+ and npm (Debian: apt-get install nodejs npm)" >&2
  exit 1
fi
if ! cmp -s "$here/package-lock.json" "$here/node_modules/.academy-lock.json"; then
  npm ci --prefix "$here" --no-audit --no-fund --cache "$root/.data/npm-cache"
  cp "$here/package-lock.json" "$here/node_modules/.academy-lock.json"
fi

mkdir -p "$here/generated"
source="$url"
if [ -z "$given" ] && ! node -e 'fetch(process.argv[1]).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))' "$url"; then
  echo "no API answers at $url; reading the schema from the application itself"
  source="$here/generated/openapi.json"
  python -m ops.runtime run -- python -m api.schema_file "$source"
fi
cd "$here"
node generate.mjs "$source" generated/academy.d.ts
