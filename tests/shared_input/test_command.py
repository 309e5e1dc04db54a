"""`inputopt universal`: listed by `inputopt --help`, writes its results, resumes from its last checkpoint."""

from __future__ import annotations

import csv
from pathlib import Path

import torch

from inputopt.cli import main

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "digits_universal.yaml"


def test_help_lists_universal(capsys):
    main(["--help"])
    assert "universal" in capsys.readouterr().out


def test_universal_command_writes_results_and_resumes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    small = ["--config", str(CONFIG), "--model.dataset.init_args.limit", "128", "--model.val_dataset.init_args.limit",
             "50", "--trainer.val_check_interval", "2", "--trainer.enable_progress_bar", "false"]
    main(["universal", *small, "--trainer.max_steps", "4"])
    run = tmp_path / "results" / "digits_universal" / "run"
    with open(run / "history.csv") as file:
        rows = list(csv.DictReader(file))
    assert [int(r["step"]) for r in rows] == [0, 2, 4] and float(rows[0]["fooling_rate"]) == 0.0
    delta = torch.load(run / "shared.pt")
    assert delta.shape == (1, 1, 32, 32) and 0 < delta.abs().max() <= 0.2 + 1e-6
    assert (run / "shared.png").is_file() and (run / "examples.png").is_file() and (run / "config.yaml").is_file()
    assert (run / "checkpoints" / "last.ckpt").is_file() and not (run / "run.lock").exists()
    main(["universal", *small, "--trainer.max_steps", "6", "--ckpt_path", "last"])
    with open(run / "history.csv") as file:
        assert [int(r["step"]) for r in csv.DictReader(file)] == [0, 2, 4, 6]  # the curve goes on
    assert not torch.equal(torch.load(run / "shared.pt"), delta)
