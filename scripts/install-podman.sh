#!/usr/bin/env bash
# What the image tests build and run the controller image with: Debian's podman, runc and
# debootstrap (no download from anywhere but the distribution's own mirror; see
# tests/component/test_images.py). Does nothing when podman is there; says so and carries on
# when it cannot install (then the image tests fail in CI, and are skipped elsewhere).
set -euo pipefail
if command -v podman >/dev/null && command -v debootstrap >/dev/null; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "install-podman: no podman here and no root apt-get" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends podman buildah runc debootstrap catatonit >/dev/null
echo "install-podman: $(podman --version)"
