#!/usr/bin/env bash
# Builds KubeVirt's control plane for the kubevirt test tier from its published Go modules: for one
# release of versions.env (the first by default), with the committed wrapper module files
# module/go.<version>.mod and .sum, into
#
#     <repo>/.cache/kubevirt/<version>/bin/        virt-controller, virt-api, virtctl, kvgen
#     <repo>/.cache/kubevirt/<version>/manifests/  KubeVirt's CRDs, webhooks, APIServices and RBAC,
#                                                  written by kvgen from KubeVirt's own generators
#
# (git-ignored; HOTPLUG_KUBEVIRT_CACHE overrides <repo>/.cache/kubevirt).
#
# * Does nothing when the release is already built from the same inputs (idempotent, ~0 s).
# * Go's module cache (GOMODCACHE) and build cache (GOCACHE) are the user's usual ones: a cold build
#   of one release takes ~5 min on 2 cores, a rebuild after `rm -rf .cache/kubevirt` seconds.
# * Version stamps: kubevirt.io/client-go/version (what `virtctl version` and the components' logs
#   report) gets the release, its commit (from the module proxy's record), tree state "clean" and the
#   module's publication date.
# * Needs only Go (>= 1.24; $GO, else `go` on PATH, else /usr/local/go/bin/go) and the Go module proxy.
#
# Usage: hack/kubevirt/build.sh [--version vX.Y.Z | --all] [--force] [--print-dir] [--fingerprint]
#   --version V    build release V (one of KUBEVIRT_VERSIONS); default: the first
#   --all          build every release of KUBEVIRT_VERSIONS, one after the other
#   --force        rebuild even if the binaries are present
#   --print-dir    print only the release's folder (holding bin/ and manifests/) on stdout
#   --fingerprint  print the hash of the release's pinned inputs and exit
# Exit codes: 0 ok, 2 no Go toolchain, 1 build failure, 64 usage.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"
read -r -a all_versions <<<"$KUBEVIRT_VERSIONS"

version="${all_versions[0]}"
all=0
force=0
print_dir=0
print_fingerprint=0
while [ $# -gt 0 ]; do
  case "$1" in
    --version) version="${2:?--version needs a value}"; shift ;;
    --version=*) version="${1#--version=}" ;;
    --all) all=1 ;;
    --force) force=1 ;;
    --print-dir) print_dir=1 ;;
    --fingerprint) print_fingerprint=1 ;;
    -h | --help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "build.sh: unknown argument $1" >&2; exit 64 ;;
  esac
  shift
done

if [ "$all" = 1 ]; then
  args=()
  [ "$force" = 1 ] && args+=(--force)
  for v in "${all_versions[@]}"; do "$0" --version "$v" "${args[@]}" >&2; done
  exit 0
fi

known=0
for v in "${all_versions[@]}"; do [ "$v" = "$version" ] && known=1; done
if [ "$known" = 0 ]; then
  echo "build.sh: KubeVirt $version is not pinned (versions.env has: ${all_versions[*]})" >&2
  exit 64
fi

log() { echo "kubevirt $version: $*" >&2; }
mod="$here/module"
modfile="go.$version.mod"
[ -f "$mod/$modfile" ] || { log "module/$modfile is missing: run hack/kubevirt/update-modules.sh $version"; exit 1; }

fingerprint="$(cat "$here/versions.env" "$here/build.sh" "$mod/$modfile" "$mod/go.$version.sum" \
  "$mod"/kvgen/*.go | sha256sum | cut -c1-64)"
if [ "$print_fingerprint" = 1 ]; then
  echo "$fingerprint"
  exit 0
fi

cache_root="${HOTPLUG_KUBEVIRT_CACHE:-$root/.cache/kubevirt}"
out="$cache_root/$version"
bin="$out/bin"
done_with() {
  if [ "$print_dir" = 1 ]; then echo "$out"; else log "binaries in $bin, manifests in $out/manifests"; fi
  exit 0
}
up_to_date() {
  [ -x "$bin/virt-controller" ] && [ -x "$bin/virt-api" ] && [ -x "$bin/virtctl" ] &&
    [ -f "$out/manifests/install.json" ] && [ "$(cat "$out/.fingerprint" 2>/dev/null)" = "$fingerprint" ]
}
if [ "$force" = 0 ] && up_to_date; then
  done_with
fi

if [ -n "${GO:-}" ]; then
  go_cmd="$GO"
elif command -v go >/dev/null 2>&1; then
  go_cmd="$(command -v go)"
else
  go_cmd=/usr/local/go/bin/go
fi
if ! [ -x "$go_cmd" ]; then
  log "no Go toolchain (${GO:+GO=$GO, }go not on PATH nor at /usr/local/go/bin/go): cannot build KubeVirt."
  log "Install Go >= 1.24."
  exit 2
fi
go() { "$go_cmd" "$@"; }

mkdir -p "$out"
# One build at a time (parallel make / pytest runs); the loser waits, then finds the binaries.
exec 9>"$out/.lock"
flock 9
if [ "$force" = 0 ] && up_to_date; then
  done_with
fi
rm -f "$out/.fingerprint"
mkdir -p "$bin"

# Reproducible, static, no VCS stamping, no toolchain downloads, the committed go.sum only.
export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="-mod=readonly -trimpath -buildvcs=false -modfile=$modfile"
log "$(go version); GOMODCACHE=$(go env GOMODCACHE) GOCACHE=$(go env GOCACHE)"
cd "$mod"
build_date="$(go list -m -f '{{if .Time}}{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}{{end}}' kubevirt.io/kubevirt)"
# The commit the release tag points at, as the module proxy recorded it (the module's .info Origin).
commit="$(GOFLAGS= go mod download -json "kubevirt.io/kubevirt@$version" | tr -d '\n ' |
  sed -n 's/.*"Origin":{[^}]*"Hash":"\([0-9a-f]*\)".*/\1/p')"
pkg=kubevirt.io/client-go/version
ldflags="-s -w -X $pkg.gitVersion=$version -X $pkg.gitTreeState=clean -X $pkg.gitCommit=${commit:-unknown}"
ldflags+=" -X $pkg.buildDate=${build_date:-1970-01-01T00:00:00Z}"

start=$SECONDS
log "building virt-controller, virt-api, virtctl (cold: ~5 min and ~3 GB of Go caches on 2 cores; warm: seconds)"
go build -pgo=off -ldflags "$ldflags" -o "$bin/" \
  kubevirt.io/kubevirt/cmd/virt-controller kubevirt.io/kubevirt/cmd/virt-api kubevirt.io/kubevirt/cmd/virtctl \
  ./kvgen
log "built in $((SECONDS - start)) s"

got="$("$bin/virtctl" version --client 2>&1 || true)"
case "$got" in
  *"GitVersion:\"$version\""*) ;;
  *) log "virtctl version --client says: $got"; exit 1 ;;
esac

rm -rf "$out/manifests.tmp"
"$bin/kvgen" -out "$out/manifests.tmp" -version "$version" 2>"$out/kvgen.log" ||
  { log "kvgen failed: $(tail -5 "$out/kvgen.log")"; exit 1; }
rm -rf "$out/manifests"
mv "$out/manifests.tmp" "$out/manifests"
log "$(find "$out/manifests/crds" -name '*.json' | wc -l) CRDs and install.json written by kvgen"

echo "$fingerprint" >"$out/.fingerprint"
done_with
