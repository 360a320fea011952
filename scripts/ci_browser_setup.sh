#!/usr/bin/env bash
# Headless Chromium and its driver for the status-page test (tests/browser/), from
# Debian's packages; installs only what is missing. Needs root.
set -euo pipefail
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q chromium chromium-driver
fi
