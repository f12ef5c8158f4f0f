#!/usr/bin/env bash
# One-time set-up: a virtual environment with the CPU build of PyTorch, mnistkit and its dev tools,
# plus Debian's Chromium for the browser tests (skipped if already installed).
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v chromium >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    echo "installing Chromium (for the browser tests)..."
    $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q chromium >/dev/null
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
echo "installing torch==2.13.0 (CPU) and mnistkit..."
.venv/bin/pip install -q torch==2.13.0 -e '.[dev]'
echo "set-up done: .venv/bin/mnistkit --help"
