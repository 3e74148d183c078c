#!/usr/bin/env bash
# Installs the helm v3 CLI, pinned below, into <repo>/.cache/bin/helm (git-ignored) by building it from
# its published Go module (helm.sh/helm/v3) through the Go module proxy. No other download is needed.
#
# * Does nothing when .cache/bin/helm already reports the pinned version (idempotent, ~0 s).
# * Uses the user's usual Go caches (GOMODCACHE, GOCACHE), so a rebuild after `rm -rf .cache/bin` only
#   relinks.
# * Stamps the version and the Kubernetes version (from the module's k8s.io/client-go, like helm's own
#   Makefile does), so `helm version` and `.Capabilities.KubeVersion` are right.
# * Prints how long the build took.
#
# Usage: hack/tools/install-helm.sh [--force] [--print-path]
#   --force       rebuild even if the pinned version is present
#   --print-path  print only the helm binary's path on stdout (logs go to stderr)
# Environment: HOTPLUG_TOOLS_BIN overrides <repo>/.cache/bin.
# Exit codes: 0 ok, 2 no Go toolchain, 1 build failure.
set -euo pipefail

HELM_VERSION=v3.21.4

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="${HOTPLUG_TOOLS_BIN:-$root/.cache/bin}"
helm="$bin/helm"

force=0
print_path=0
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    --print-path) print_path=1 ;;
    -h | --help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "install-helm.sh: unknown argument $arg" >&2; exit 64 ;;
  esac
done

log() { echo "install-helm: $*" >&2; }
done_with() {
  if [ "$print_path" = 1 ]; then echo "$helm"; else log "helm $HELM_VERSION at $helm"; fi
  exit 0
}
up_to_date() {
  [ -x "$helm" ] && [ "$("$helm" version --template '{{.Version}}' 2>/dev/null)" = "$HELM_VERSION" ]
}

if [ "$force" = 0 ] && up_to_date; then
  done_with
fi

if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
  export PATH="/usr/local/go/bin:$PATH"
fi
if ! command -v go >/dev/null 2>&1; then
  log "no Go toolchain (go not on PATH nor at /usr/local/go/bin/go): cannot build helm."
  log "Install Go (>= the go line of helm's go.mod), or put helm on PATH / set HELM."
  exit 2
fi

mkdir -p "$bin"
# One build at a time (parallel pytest workers); the loser waits, then finds the binary.
exec 9>"$bin/.helm.lock"
flock 9
if [ "$force" = 0 ] && up_to_date; then
  done_with
fi

export CGO_ENABLED=0 GOFLAGS="-mod=readonly -trimpath -buildvcs=false"
start=$SECONDS
log "$(go version); GOMODCACHE=$(go env GOMODCACHE) GOCACHE=$(go env GOCACHE)"
gomod="$(go mod download -json "helm.sh/helm/v3@$HELM_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
client_go="$(awk '$1 == "k8s.io/client-go" { print $2 }' "$gomod")"
k8s_minor="$(echo "$client_go" | cut -d. -f2)"
k8s_major=$(($(echo "${client_go#v}" | cut -d. -f1) + 1))
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  ldflags+=" -X $pkg.k8sVersionMajor=$k8s_major -X $pkg.k8sVersionMinor=$k8s_minor"
done

log "building helm $HELM_VERSION (client-go $client_go => Kubernetes $k8s_major.$k8s_minor)"
log "(cold: a few minutes on 2 cores; warm caches: seconds)"
tmp="$(mktemp -d "$bin/.helm-build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
GOBIN="$tmp" go install -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
mv -f "$tmp/helm" "$helm"
log "helm $HELM_VERSION built in $((SECONDS - start)) s"
"$helm" version >&2
done_with
