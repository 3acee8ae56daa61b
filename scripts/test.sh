#!/usr/bin/env bash
# Install swifthydra with its test dependencies into a virtual environment, lint, and run the tests.
# Usage: bash scripts/test.sh [pytest arguments]     (SWIFTHYDRA_VENV picks the venv folder)
#
# The distributed and browser tests need system packages: as root (CI), a headless JRE for Spark
# when `java` is missing and Chromium for the HTML report test when it is missing, from Debian's
# packages (default-jre-headless, chromium). Without root they are not installed and those tests
# skip, saying why (in CI, where they must run, they fail instead).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${SWIFTHYDRA_VENV:-.venv}"

missing=()
command -v java >/dev/null 2>&1 || missing+=(default-jre-headless)
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || missing+=(chromium)
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing ${missing[*]} (apt-get)"
        start=$SECONDS
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
        echo "installed ${missing[*]} in $((SECONDS - start)) s"
    else
        echo "not root: ${missing[*]} not installed; the tests needing them will skip" >&2
    fi
fi

python3 -m venv "$venv"
# torch==2.13.0 is the CPU build; a bare "torch" would pull a multi-GB CUDA build.
start=$SECONDS
"$venv/bin/pip" install -q --disable-pip-version-check "torch==2.13.0" -e ".[dev,bench,ray,spark]"
echo "python packages installed in $((SECONDS - start)) s"
"$venv/bin/ruff" check src tests benchmarks
"$venv/bin/python" -m pytest -q "$@"
