"""`tuner promote --dry-run` prints a compact per-symbol change (family, config keys, scores);
--verbose the full file diff (fabricated experiments, built as in tests/test_report.py)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from tests.test_report import make_experiment
from tuner.cli import main


def _promote(tmp_path, *extra: str):
    return CliRunner().invoke(main, ["promote", "exp", "--storage", str(tmp_path / "results"),
                                     "--configs", str(tmp_path / "configs"), *extra])


def test_when_dry_run_then_each_symbol_gets_a_few_lines_of_config_keys_and_scores(tmp_path):
    make_experiment(tmp_path / "results")
    result = _promote(tmp_path, "--dry-run", "--symbols", "AAA")
    assert result.exit_code == 0, result.output
    target = tmp_path / "configs" / "best" / "AAA.json"
    assert result.output.splitlines()[:8] == [
        f"AAA: {target} (new)",
        "  family: toto",
        '  config.aggregate: "median"',
        "  config.num_samples: 256",
        "  config.samples_per_batch: 128",
        "  validation pct_return_mae: 0.01000",
        "  test pct_return_mae: 0.01100",
        f"AAA: would promote toto (validation pct_return_mae 0.01000) to {target} [new]",
    ]
    assert "---" not in result.output and '"windows"' not in result.output


def test_when_a_production_file_exists_then_the_dry_run_shows_only_what_changes(tmp_path):
    make_experiment(tmp_path / "results")
    assert _promote(tmp_path, "--symbols", "AAA").exit_code == 0
    best = tmp_path / "configs" / "best" / "AAA.json"
    current = json.loads(best.read_text())
    current["config"]["num_samples"] = 64
    current["config"]["old_key"] = 1
    current["validation"]["pct_return_mae"] = 0.02
    best.write_text(json.dumps(current))
    result = _promote(tmp_path, "--dry-run", "--symbols", "AAA")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[:5] == [
        f"AAA: {best} (replaces toto from experiment exp)",
        "  config.num_samples: 64 -> 256",
        "  config.old_key: 1 -> (removed)",
        "  validation pct_return_mae: 0.02000 -> 0.01000",
        f"AAA: would promote toto (validation pct_return_mae 0.01000, was 0.02000) to {best} "
        "[replaces toto from experiment exp]",
    ]
    verbose = _promote(tmp_path, "--dry-run", "--symbols", "AAA", "--verbose")
    assert verbose.output.startswith(f"--- {best}\n") and '"windows"' in verbose.output
