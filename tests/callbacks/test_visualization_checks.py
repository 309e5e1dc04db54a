"""VisualizationChecks from the command line: on `inputopt fit` and `inputopt sweep`, with its options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inputopt.callbacks.visualization_checks import VisualizationChecks

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_fit_command_writes_and_prints_the_table(tmp_path, monkeypatch, capsys):
    from inputopt.commands.fit import cli

    monkeypatch.chdir(tmp_path)
    cli(["fit", "--config", str(CONFIGS / "digits_fourier.yaml"), "--trainer.max_steps", "3",
         "--trainer.enable_progress_bar", "false", "--model.problem.objective.init_args.unit", "[3, 5]",
         "--trainer.callbacks+=VisualizationChecks", "--trainer.callbacks.transfer_network=digits_b",
         "--trainer.callbacks.plausibility_layer=classifier.2", "--trainer.callbacks.seeds=2",
         "--trainer.callbacks.num_natural=100"])
    out = tmp_path / "results" / "digits_fourier" / "run"
    record = json.loads((out / "checks.json").read_text())
    assert [row["unit"] for row in record] == [3, 5]
    names = [c["name"] for c in record[0]["checks"]]
    assert names == ["transfer", "strength", "path", "plausibility", "high frequency", "seeds"]  # seeds=2 adds it
    table = (out / "checks.md").read_text()
    assert "| unit | verdict | transfer |" in table
    assert table.split("\n\n", 1)[1].strip() in capsys.readouterr().out


def test_sweep_command_checks_its_units(tmp_path, monkeypatch):
    from inputopt.commands.sweep import run_sweep

    monkeypatch.chdir(tmp_path)
    run_sweep(["--config", str(CONFIGS / "digits_fourier.yaml"), "--trainer.max_steps", "3",
               "--model.problem.objective.init_args.unit", "[1, 2, 3]", "--trainer.callbacks+=VisualizationChecks",
               "--trainer.callbacks.num_natural=100", "--trainer.callbacks.verbose=false"],
              units_per_batch=2, sweep_dir=tmp_path / "sweep", progress=False)
    record = json.loads((tmp_path / "sweep" / "checks.json").read_text())
    assert [row["unit"] for row in record] == [1, 2, 3]
    assert [c["name"] for c in record[0]["checks"]] == ["strength", "path", "plausibility", "high frequency"]


def test_exceptions():
    with pytest.raises(ValueError, match="natural must be one of"):
        VisualizationChecks("imagenet")
    with pytest.raises(ValueError, match="seeds must be"):
        VisualizationChecks(seeds=0)
    with pytest.raises(ValueError, match="unknown checks"):
        VisualizationChecks(checks=["beauty"])


def test_sweep_on_a_finished_folder_checks_every_unit_without_optimizing(tmp_path, monkeypatch):
    from inputopt.commands.sweep import run_sweep

    monkeypatch.chdir(tmp_path)
    args = ["--config", str(CONFIGS / "digits_fourier.yaml"), "--trainer.max_steps", "3",
            "--model.problem.objective.init_args.unit", "[1, 2]"]
    run_sweep(args, sweep_dir=tmp_path / "sweep", progress=False)
    assert not (tmp_path / "sweep" / "checks.json").exists()
    chunks = run_sweep([*args, "--trainer.callbacks+=VisualizationChecks", "--trainer.callbacks.verbose=false",
                        "--trainer.callbacks.num_natural=100"], sweep_dir=tmp_path / "sweep", progress=False)
    assert chunks == []  # nothing optimized again
    assert [row["unit"] for row in json.loads((tmp_path / "sweep" / "checks.json").read_text())] == [1, 2]
