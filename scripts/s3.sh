#!/usr/bin/env bash
# A real S3-compatible server for the tests (the artifact store's object-storage side):
#   scripts/s3.sh build   build MinIO from the Go module proxy (once; Go's caches make later
#                         builds take seconds); tests/s3/server.py runs it on 127.0.0.1
# Test infrastructure (tests/s3/), not product.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$PWD/.kubetask/s3/bin/minio
SRC=tests/s3

build() {
  # The stamp names what the binary was built from; a change rebuilds.
  local stamp
  stamp=$(cat "$SRC/go.mod" "$SRC/go.sum" "$SRC/main.go" | sha256sum | cut -c1-16)
  if [[ -x $BIN && -f $BIN.stamp && $(cat "$BIN.stamp") == "$stamp" ]]; then
    return 0
  fi
  command -v go >/dev/null || PATH=$PATH:/usr/local/go/bin
  command -v go >/dev/null || { echo "s3.sh: go is not installed (Go >= 1.26 is needed)" >&2; exit 1; }
  echo "s3.sh: building MinIO (cold: ~4 CPU-min, once)" >&2
  mkdir -p "$(dirname "$BIN")"
  local start=$SECONDS
  (cd "$SRC" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "$BIN.new" .)
  mv "$BIN.new" "$BIN"
  echo "$stamp" > "$BIN.stamp"
  echo "s3.sh: built in $((SECONDS - start)) s" >&2
}

case "${1:-}" in
  build) build ;;
  *) sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
