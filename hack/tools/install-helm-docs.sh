#!/usr/bin/env bash
# Installs helm-docs, pinned below, into <repo>/.cache/bin/helm-docs (git-ignored) by building it from
# its published Go module (github.com/norwoodj/helm-docs) through the Go module proxy. The chart's
# README (charts/hotplug-agent/README.md) is its output from README.md.gotmpl and values.yaml;
# tests/chart/test_readme.py regenerates it and compares.
#
# * Does nothing when .cache/bin/helm-docs is the pinned version (idempotent, ~0 s).
# * Uses the user's usual Go caches (GOMODCACHE, GOCACHE).
#
# Usage: hack/tools/install-helm-docs.sh [--print-path]
#   --print-path  print only the binary's path on stdout (logs go to stderr)
# Environment: HOTPLUG_TOOLS_BIN overrides <repo>/.cache/bin.
# Exit codes: 0 ok, 2 no Go toolchain, 1 build failure.
set -euo pipefail

HELM_DOCS_VERSION=v1.14.2

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="${HOTPLUG_TOOLS_BIN:-$root/.cache/bin}"
tool="$bin/helm-docs"

print_path=0
for arg in "$@"; do
  case "$arg" in
    --print-path) print_path=1 ;;
    -h | --help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "install-helm-docs.sh: unknown argument $arg" >&2; exit 64 ;;
  esac
done

log() { echo "install-helm-docs: $*" >&2; }
done_with() {
  if [ "$print_path" = 1 ]; then echo "$tool"; else log "helm-docs $HELM_DOCS_VERSION at $tool"; fi
  exit 0
}
# helm-docs has no --version flag: the build writes the version it built next to the binary.
up_to_date() {
  [ -x "$tool" ] && [ "$(cat "$tool.version" 2>/dev/null)" = "$HELM_DOCS_VERSION" ]
}

if up_to_date; then
  done_with
fi
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
  export PATH="/usr/local/go/bin:$PATH"
fi
if ! command -v go >/dev/null 2>&1; then
  log "no Go toolchain: cannot build helm-docs; install Go, or put helm-docs on PATH / set HELM_DOCS."
  exit 2
fi

mkdir -p "$bin"
exec 9>"$bin/.helm-docs.lock"
flock 9
if up_to_date; then
  done_with
fi
export CGO_ENABLED=0 GOFLAGS="-mod=readonly -trimpath -buildvcs=false"
start=$SECONDS
tmp="$(mktemp -d "$bin/.helm-docs-build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
log "building helm-docs $HELM_DOCS_VERSION"
GOBIN="$tmp" go install -ldflags "-s -w -X main.version=${HELM_DOCS_VERSION#v}" \
  "github.com/norwoodj/helm-docs/cmd/helm-docs@$HELM_DOCS_VERSION"
mv -f "$tmp/helm-docs" "$tool"
echo "$HELM_DOCS_VERSION" >"$tool.version"
log "helm-docs $HELM_DOCS_VERSION built in $((SECONDS - start)) s"
done_with
