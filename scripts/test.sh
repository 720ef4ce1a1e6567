#!/usr/bin/env bash
# Set up .venv (see setup.sh) and run the whole test suite, slow multi-node tests included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
exec .venv/bin/python -m pytest "$@"
