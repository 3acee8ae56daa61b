#!/usr/bin/env bash
# Install swifthydra with its test dependencies into a virtual environment, lint, and run the tests.
# Usage: bash scripts/test.sh [pytest arguments]     (SWIFTHYDRA_VENV picks the venv folder)
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${SWIFTHYDRA_VENV:-.venv}"
python3 -m venv "$venv"
# torch==2.13.0 is the CPU build; a bare "torch" would pull a multi-GB CUDA build.
"$venv/bin/pip" install -q --disable-pip-version-check "torch==2.13.0" -e ".[dev,bench]"
"$venv/bin/ruff" check src tests benchmarks
"$venv/bin/python" -m pytest -q "$@"
