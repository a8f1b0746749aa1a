#!/usr/bin/env bash
# Headless Chromium for the page tests (tests/e2e/*_browser.py: review, labelling, layout).
# Idempotent: does nothing when a `chromium` binary is already on PATH. Needs root (apt-get);
# on Debian/Ubuntu images the package is `chromium`, its binary /usr/bin/chromium.
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
    echo "chromium already installed: $(command -v chromium)"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "install_chromium.sh: need root (or sudo) to apt-get install chromium" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends chromium
command -v chromium
