#!/usr/bin/env bash
# Builds kube-apiserver and etcd for the controlplane test tier from their published Go modules,
# at the versions pinned in versions.env, with the committed wrapper modules (go.mod + go.sum under
# kube-apiserver/ and etcd/), into
#
#     <repo>/.cache/controlplane/k8s-<KUBERNETES_VERSION>_etcd-<ETCD_VERSION>/bin/
#
# (git-ignored; HOTPLUG_CONTROLPLANE_CACHE overrides <repo>/.cache/controlplane).
#
# * Does nothing when both binaries are already there for the same wrapper modules (idempotent, ~0 s).
# * KUBEBUILDER_ASSETS, if set and holding executable kube-apiserver and etcd, is used instead: nothing
#   is built.
# * Go's module cache (GOMODCACHE) and build cache (GOCACHE) are the user's usual ones, so a rebuild
#   after `rm -rf .cache/controlplane` only relinks.
# * Needs only Go (>= 1.24; $GO, else `go` on PATH, else /usr/local/go/bin/go) and the Go module proxy.
#
# Usage: hack/controlplane/build.sh [--force] [--print-dir] [--fingerprint]
#   --force        rebuild even if the binaries are present
#   --print-dir    print only the binary directory on stdout (logs go to stderr)
#   --fingerprint  print the hash of the pinned inputs (versions.env, wrapper go.mod/go.sum) and exit
# Exit codes: 0 ok, 2 no Go toolchain, 1 build failure.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"

force=0
print_dir=0
print_fingerprint=0
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    --print-dir) print_dir=1 ;;
    --fingerprint) print_fingerprint=1 ;;
    -h | --help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "build.sh: unknown argument $arg" >&2; exit 64 ;;
  esac
done

log() { echo "controlplane: $*" >&2; }
done_with() {
  if [ "$print_dir" = 1 ]; then echo "$1"; else log "binaries in $1"; fi
  exit 0
}

# What the binaries were built from; a change of a wrapper module forces a rebuild.
fingerprint="$(cat "$here/versions.env" "$here"/kube-apiserver/go.{mod,sum} "$here"/etcd/go.{mod,sum} |
  sha256sum | cut -c1-64)"
if [ "$print_fingerprint" = 1 ]; then
  echo "$fingerprint"
  exit 0
fi

# 1. KUBEBUILDER_ASSETS override.
if [ -n "${KUBEBUILDER_ASSETS:-}" ]; then
  if [ -x "$KUBEBUILDER_ASSETS/kube-apiserver" ] && [ -x "$KUBEBUILDER_ASSETS/etcd" ]; then
    log "using KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS (nothing built)"
    done_with "$KUBEBUILDER_ASSETS"
  fi
  log "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS lacks kube-apiserver or etcd; building our own"
fi

cache_root="${HOTPLUG_CONTROLPLANE_CACHE:-$root/.cache/controlplane}"
out="$cache_root/k8s-${KUBERNETES_VERSION}_etcd-${ETCD_VERSION}"
bin="$out/bin"

up_to_date() {
  [ -x "$bin/kube-apiserver" ] && [ -x "$bin/etcd" ] &&
    [ "$(cat "$bin/.fingerprint" 2>/dev/null)" = "$fingerprint" ]
}

if [ "$force" = 0 ] && up_to_date; then
  done_with "$bin"
fi

# 2. Find Go.
if [ -n "${GO:-}" ]; then
  go_cmd="$GO"
elif command -v go >/dev/null 2>&1; then
  go_cmd="$(command -v go)"
else
  go_cmd=/usr/local/go/bin/go
fi
if ! [ -x "$go_cmd" ]; then
  log "no Go toolchain (${GO:+GO=$GO, }go not on PATH nor at /usr/local/go/bin/go): cannot build kube-apiserver and etcd."
  log "Install Go >= 1.24, or set KUBEBUILDER_ASSETS to a folder holding kube-apiserver and etcd."
  exit 2
fi
go() { "$go_cmd" "$@"; }

mkdir -p "$out"
# One build at a time (parallel make / pytest runs); the loser waits, then finds the binaries.
exec 9>"$out/.lock"
flock 9
if [ "$force" = 0 ] && up_to_date; then
  done_with "$bin"
fi
mkdir -p "$bin"
rm -f "$bin/.fingerprint"

# Reproducible, static, no VCS stamping, no toolchain downloads, committed go.sum only.
export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="-mod=readonly -trimpath -buildvcs=false"
log "$(go version); GOMODCACHE=$(go env GOMODCACHE) GOCACHE=$(go env GOCACHE)"

build_date="$(cd "$here/kube-apiserver" && go list -m -f '{{if .Time}}{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}{{end}}' k8s.io/kubernetes)"
minor="${KUBERNETES_VERSION#v1.}"
minor="${minor%%.*}"
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=${KUBERNETES_VERSION} -X $pkg.gitMajor=1 -X $pkg.gitMinor=${minor}"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=${build_date:-1970-01-01T00:00:00Z}"
done

start=$SECONDS
log "building kube-apiserver ${KUBERNETES_VERSION} (cold: ~5 min and ~3 GB of Go caches on 2 cores; warm: seconds)"
(cd "$here/kube-apiserver" &&
  go build -pgo=off -ldflags "$ldflags" -o "$bin/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver)
mv -f "$bin/kube-apiserver.tmp" "$bin/kube-apiserver"
log "kube-apiserver built in $((SECONDS - start)) s"

start=$SECONDS
log "building etcd ${ETCD_VERSION}"
(cd "$here/etcd" && go build -pgo=off -ldflags "-s -w" -o "$bin/etcd.tmp" go.etcd.io/etcd/server/v3)
mv -f "$bin/etcd.tmp" "$bin/etcd"
log "etcd built in $((SECONDS - start)) s"

got="$("$bin/kube-apiserver" --version)"
[ "$got" = "Kubernetes ${KUBERNETES_VERSION}" ] || { log "kube-apiserver --version says '$got'"; exit 1; }
got="$("$bin/etcd" --version | head -1)"
[ "$got" = "etcd Version: ${ETCD_VERSION#v}" ] || { log "etcd --version says '$got'"; exit 1; }
log "built kube-apiserver ${KUBERNETES_VERSION} and etcd ${ETCD_VERSION}"
echo "$fingerprint" >"$bin/.fingerprint"
done_with "$bin"
