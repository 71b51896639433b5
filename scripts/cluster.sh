#!/usr/bin/env bash
# A real Kubernetes control plane on 127.0.0.1, built from the official Go modules:
#   scripts/cluster.sh build   build (once; Go's caches make later builds take seconds)
#   scripts/cluster.sh up      start etcd, kube-apiserver, kube-controller-manager,
#                              kube-scheduler and the process node agent; install what
#                              kubetask needs (namespace, the chart's RBAC, artifacts claim)
#   scripts/cluster.sh env     the settings with which `make run` uses it:
#                              eval "$(scripts/cluster.sh env)"; make run
#   scripts/cluster.sh down    stop it (its state stays in .kubetask/cluster until `clean`)
#   scripts/cluster.sh clean   stop it and remove its state
# KUBETASK_CLUSTER_DIR puts the cluster's state elsewhere; KUBETASK_DATA_DIR (as `make run`
# reads it, default .kubetask) holds the artifacts folder its claim is bound to.
# Test infrastructure (tests/cluster/), not product.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DIR=${KUBETASK_CLUSTER_DIR:-$ROOT/.kubetask/cluster}  # the cluster's state (tests set their own)
BIN=$ROOT/.kubetask/cluster/bin/kubecluster
SRC=tests/cluster
K8S_VERSION=v1.37.2
PY=${PY:-$ROOT/.venv/bin/python}

build() {
  # The stamp names what the binary was built from; a change rebuilds.
  local stamp
  stamp=$(cat "$SRC/go.mod" "$SRC/go.sum" "$SRC/main.go" | sha256sum | cut -c1-16)
  if [[ -x $BIN && -f $BIN.stamp && $(cat "$BIN.stamp") == "$stamp" ]]; then
    return 0
  fi
  command -v go >/dev/null || PATH=$PATH:/usr/local/go/bin
  command -v go >/dev/null || { echo "cluster.sh: go is not installed (Go >= 1.26 is needed)" >&2; exit 1; }
  echo "cluster.sh: building kube-apiserver, kube-controller-manager, kube-scheduler and etcd $K8S_VERSION (cold: ~8 min on 2 cores, once)" >&2
  mkdir -p "$DIR/bin"
  local start=$SECONDS
  local ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION"
  ldflags+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37"
  ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean"
  (cd "$SRC" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -ldflags "$ldflags" -o "$BIN.new" .)
  mv "$BIN.new" "$BIN"
  echo "$stamp" > "$BIN.stamp"
  echo "cluster.sh: built in $((SECONDS - start)) s" >&2
}

gomod() {
  # Regenerate the replace block from the release's own go.mod (never by hand).
  local mod
  mod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  local staging=v0.${K8S_VERSION#v1.}
  {
    echo "module kubetask.test/cluster"; echo; echo "go 1.26.0"; echo
    echo "require k8s.io/kubernetes $K8S_VERSION"; echo
    echo "// Generated from k8s.io/kubernetes@$K8S_VERSION's own go.mod by scripts/cluster.sh gomod: every staging"
    echo "// module pinned to the same release."
    echo "replace ("
    awk -v s="$staging" '/=> \.\/staging\/src\//{print "\t"$1" => "$1" "s}' "$mod"
    echo ")"
  } > "$SRC/go.mod"
  (cd "$SRC" && GOFLAGS=-mod=mod go mod tidy)
}

case "${1:-}" in
  build) build ;;
  gomod) gomod ;;
  up) build; "$PY" -m tests.cluster up "$DIR" ;;
  env) "$PY" -m tests.cluster env "$DIR" ;;
  down) "$PY" -m tests.cluster down "$DIR" ;;
  clean) "$PY" -m tests.cluster down "$DIR"; find "$DIR" -mindepth 1 -maxdepth 1 ! -name bin -exec rm -rf {} + ;;
  *) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
