#!/usr/bin/env bash
# Install Debian's headless Chromium for the browser tests (tests/browser, pytest -m browser).
# Idempotent: does nothing when /usr/bin/chromium is already there. Needs root (or sudo) and apt.
# Playwright for Python drives this binary (executable_path=/usr/bin/chromium); never run
# `playwright install`, which downloads its own browsers from the internet.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
    echo "chromium already installed: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_browser.sh: apt-get not found; install Chromium as /usr/bin/chromium by other means" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends chromium fonts-dejavu-core
/usr/bin/chromium --version
