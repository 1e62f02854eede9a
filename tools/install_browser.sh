#!/usr/bin/env bash
# Headless Chromium and its WebDriver for the browser tests (tests/test_browser_*.py), from Debian's packages.
# Does nothing when both are there. Needs root or sudo and apt-get; otherwise says what to install and exits 0
# (the browser tests then skip, except on CI where they fail).
set -euo pipefail
if command -v chromium >/dev/null && [ -x /usr/bin/chromedriver ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "install_browser.sh: no apt-get here; install Chromium and chromedriver yourself for the browser tests" >&2
    exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
        echo "install_browser.sh: not root and no sudo; run: sudo apt-get install chromium chromium-driver" >&2
        exit 0
    fi
fi
echo "installing chromium and chromium-driver (Debian packages) for the browser tests"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
    chromium chromium-driver fonts-dejavu-core >/dev/null
chromium --version
