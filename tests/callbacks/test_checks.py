"""EvaluationChecks from the command line: `inputopt attack ... --trainer.callbacks+=EvaluationChecks` runs the
checks of Carlini et al. on the run's attack and first samples, with its options from the command line."""

from __future__ import annotations

import json
from pathlib import Path

from inputopt.cli import main

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "digits_pgd.yaml"


def test_attack_command_with_the_checks_callback_writes_and_prints_the_table(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    main(["attack", "--config", str(CONFIG), "--model.dataset.init_args.limit", "16", "--trainer.accelerator", "cpu",
          "--trainer.enable_progress_bar", "false", "--trainer.callbacks+=EvaluationChecks",
          "--trainer.callbacks.num_samples", "12", "--trainer.callbacks.init_args.queries", "40",
          "--trainer.callbacks.init_args.minimal_steps", "20", "--trainer.callbacks.init_args.sphere_points", "20"])
    out = tmp_path / "results" / "digits_pgd"  # beside results.json (SaveAttackResults' folder)
    assert (out / "results.json").is_file()
    record = json.loads((out / "checks.json").read_text())
    assert (record["attack"], record["norm"], record["eps"], record["n"]) == ("PGD", "Linf", [0.02, 0.05, 0.1, 0.15, 0.2], 12)
    checks = {c["name"]: c for c in record["checks"]}
    assert list(checks) == ["unbounded", "eps curve", "steps", "black-box", "restarts", "sphere"]
    assert checks["unbounded"]["passed"]  # the whole box breaks every digit of the (unmasked) digits model
    assert "Square (40 queries)" in checks["black-box"]["detail"]  # the command line's options reach the checks
    table = (out / "checks.md").read_text()
    lines = table.splitlines()
    assert lines[0] == "Evaluation checks of PGD (Linf, eps 0.02, 0.05, 0.1, 0.15, 0.2) on the first n = 12 samples of the data set"
    assert lines[2] == "| check | result | numbers |" and len(lines) == 4 + len(checks)
    assert table.strip() in capsys.readouterr().out
