#!/usr/bin/env bash
# Set up .venv (see setup.sh) and run the main job: a small tuning experiment on the bundled
# sample data with a local Ray. Extra arguments go to `tuner run`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/tuner run "$@"
