"""The package's layers and its freedom from import circles, checked by import-linter.

The contracts live in pyproject.toml ([tool.importlinter]); this test fails, listing the
offending imports, when a module imports a layer above its own, the core imports Ray, or two
modules of a package import each other in a circle."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_when_the_package_is_linted_then_every_import_contract_is_kept():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    assert lint, "lint-imports not installed: bash scripts/setup.sh --test installs import-linter"
    done = subprocess.run([lint, "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 kept, 0 broken" in done.stdout
