#!/usr/bin/env bash
# Headless Chromium and its WebDriver for the browser tests (tests/test_browser_*.py), from Debian's packages.
# Does nothing when both are there. Needs root or sudo and apt-get; otherwise says what to install and exits 0
# (the browser tests then skip, except on CI where they fail).
set -euo pipefail
if command -v chromium >/dev/null && [ -x /usr/bin/chromedriver ]; then
    exit 0
fi
source "$(dirname "$0")/apt_install.sh"
apt_install install_browser.sh "the browser tests" chromium chromium-driver fonts-dejavu-core || exit 0
chromium --version
