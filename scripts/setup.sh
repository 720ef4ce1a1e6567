#!/usr/bin/env bash
# Create or update .venv with the package (editable) and, with --test, the test tools and the
# upstream Toto/Kronos packages used only as parity-test oracles. Safe to re-run: it skips pip
# when nothing it installs from has changed.
set -euo pipefail
cd "$(dirname "$0")/.."
want_test=0
[[ "${1:-}" == "--test" ]] && want_test=1
python=${PYTHON:-python3}
[[ -x .venv/bin/python ]] || "$python" -m venv .venv
stamp=".venv/.setup-$want_test-$(cat pyproject.toml constraints/*.txt | sha1sum | cut -c1-12)"
if [[ ! -f "$stamp" ]]; then
  .venv/bin/python -m pip install -q --upgrade pip
  # constraints/cpu.txt pins torch 2.13.0 so CI never pulls a multi-GB CUDA build by accident.
  if (( want_test )); then
    .venv/bin/python -m pip install -q -c constraints/cpu.txt -e '.[test]'
    .venv/bin/python -m pip install -q -c constraints/cpu.txt -r constraints/oracle-deps.txt
    # The oracles pin old torch/pandas/numpy; --no-deps keeps ours.
    .venv/bin/python -m pip install -q --no-deps -r constraints/oracle.txt
    # Toto 2.0 declares Python >= 3.12 but runs on ours: see constraints/oracle-toto2.txt.
    .venv/bin/python -m pip install -q --no-deps --ignore-requires-python -r constraints/oracle-toto2.txt
  else
    .venv/bin/python -m pip install -q -c constraints/cpu.txt -e .
  fi
  touch "$stamp"
fi
