#!/usr/bin/env bash
# One-time set-up: a virtual environment with the CPU build of PyTorch, mnistkit and its dev tools,
# plus Debian's Chromium and onnxruntime-web (npm) for the browser tests (skipped if already installed).
set -euo pipefail
cd "$(dirname "$0")"
MISSING=""
command -v chromium >/dev/null 2>&1 || MISSING="chromium"
command -v npm >/dev/null 2>&1 || MISSING="$MISSING nodejs npm"
if [ -n "$MISSING" ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    echo "installing$MISSING with apt (for the browser tests)..."
    $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q $MISSING >/dev/null
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
echo "installing torch==2.13.0 (CPU) and mnistkit..."
.venv/bin/pip install -q torch==2.13.0 -e '.[dev]'
if [ ! -f tests/web/node_modules/onnxruntime-web/dist/ort.wasm.min.js ]; then
    echo "installing onnxruntime-web (for the browser test of the exported web page)..."
    npm ci --prefix tests/web --ignore-scripts --no-audit --no-fund --loglevel=error
fi
echo "set-up done: .venv/bin/mnistkit --help"
