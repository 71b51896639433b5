#!/usr/bin/env bash
# The browser the dashboard tests drive: Debian's chromium and chromedriver (no download from
# anywhere but the distribution's own mirror). Does nothing when both are there; says so and
# carries on when it cannot install (then tests/integration/test_dashboard.py is skipped).
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "install-browser: no chromium here and no root apt-get; the dashboard browser tests will be skipped" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core >/dev/null
echo "install-browser: $(chromium --version)"
