#!/usr/bin/env bash
# What some tests drive and that pip cannot install, from the distribution's own mirror only:
# chromium and chromedriver (the dashboard tests, tests/integration/test_dashboard.py) and
# podman, runc and debootstrap (the image tests, tests/component/test_images.py). Installs
# what is missing; says so and carries on when it cannot (those tests then fail in CI and
# are skipped elsewhere, saying why).
set -euo pipefail
missing=()
command -v chromium >/dev/null || missing+=(chromium fonts-dejavu-core)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
command -v podman >/dev/null || missing+=(podman buildah runc catatonit)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if [ ${#missing[@]} = 0 ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "install-ci-tools: cannot install ${missing[*]} (no root apt-get here)" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-ci-tools: $(chromium --version); $(podman --version)"
