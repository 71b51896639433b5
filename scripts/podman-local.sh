#!/usr/bin/env bash
# Build and run kubetask's images with podman on a machine without a Docker engine and
# without an image registry to pull from (see PODMAN.md in the shared notes):
#
#   scripts/podman-local.sh env          print the exports that point podman at our config
#   scripts/podman-local.sh base         build localhost/kubetask-pybase:bookworm, once
#                                        (debootstrap'ed Debian bookworm + python3 3.11)
#   scripts/podman-local.sh podman ARGS  run podman with our config (e.g. `podman images`)
#
# Everything lives under $KUBETASK_PODMAN_DIR (default ~/.cache/kubetask/podman): the
# containers.conf (runc, cgroupfs, lowered ulimits, host network), the storage.conf (overlay)
# and the image store, so the slow part (debootstrap, apt-get) is paid once per machine.
# Containers use the host network; nothing here talks to a container's bridge address.
set -euo pipefail

DIR="${KUBETASK_PODMAN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kubetask/podman}"
BASE_TAG="${KUBETASK_PYBASE:-localhost/kubetask-pybase:bookworm}"
ROOTFS_TAG="localhost/bookworm-min:latest"

configure() {
    mkdir -p "$DIR/storage/run" "$DIR/storage/root" "$DIR/tmp"
    cat >"$DIR/containers.conf" <<'EOF'
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"

[containers]
netns = "host"
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
EOF
    cat >"$DIR/storage.conf" <<EOF
[storage]
driver = "overlay"
runroot = "$DIR/storage/run"
graphroot = "$DIR/storage/root"
EOF
    export CONTAINERS_CONF="$DIR/containers.conf"
    export CONTAINERS_STORAGE_CONF="$DIR/storage.conf"
    export TMPDIR="$DIR/tmp"
}

has_image() {
    podman image exists "$1"
}

build_base() {
    if has_image "$BASE_TAG"; then
        echo "base image $BASE_TAG already built"
        return
    fi
    if ! has_image "$ROOTFS_TAG"; then
        local rootfs
        rootfs="$(mktemp -d "$DIR/tmp/rootfs.XXXXXX")"
        debootstrap --variant=minbase bookworm "$rootfs" >"$DIR/debootstrap.log" 2>&1 \
            || { tail -20 "$DIR/debootstrap.log" >&2; exit 1; }
        tar -C "$rootfs" -c . | podman import - "$ROOTFS_TAG"
        rm -rf "$rootfs"
    fi
    # A stand-in for python:3.11-slim: Debian's python3 (3.11 on bookworm) with venv and pip,
    # trusting the same extra CAs as this machine (a TLS-inspecting proxy may stand between
    # it and the package registries).
    local context
    context="$(mktemp -d "$DIR/tmp/base.XXXXXX")"
    mkdir "$context/ca"
    if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
        cp /usr/local/share/ca-certificates/*.crt "$context/ca/"
    fi
    cat >"$context/Containerfile" <<EOF
FROM $ROOTFS_TAG
COPY ca/ /usr/local/share/ca-certificates/
RUN apt-get update \\
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \\
       python3 python3-venv ca-certificates \\
    && rm -rf /var/lib/apt/lists/* \\
    && update-ca-certificates \\
    && ln -s /usr/bin/python3 /usr/local/bin/python
EOF
    podman build --network=host -t "$BASE_TAG" "$context"
    rm -rf "$context"
}

case "${1:-}" in
env)
    configure
    echo "export CONTAINERS_CONF=$CONTAINERS_CONF"
    echo "export CONTAINERS_STORAGE_CONF=$CONTAINERS_STORAGE_CONF"
    echo "export TMPDIR=$TMPDIR"
    ;;
base)
    configure
    build_base
    ;;
podman)
    configure
    shift
    exec podman "$@"
    ;;
*)
    sed -n '2,12p' "$0" >&2
    exit 2
    ;;
esac
