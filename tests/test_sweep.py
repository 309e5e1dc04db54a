"""`inputopt sweep`: chunks written as they finish, resumed without recomputing, independent of chunk size."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from inputopt.cli import cli
from inputopt.sweep import run_sweep

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "digits.yaml"
ARGS = ["--config", str(CONFIG), "--trainer.max_steps", "4", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--trainer.logger", "false", "--trainer.callbacks",
        '[{"class_path": "SaveImages", "init_args": {"display": "clamp", "dirpath": "single"}}]']


def test_interrupted_sweep_resumes_without_recomputing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = [*ARGS, "--model.objective.init_args.unit", "all"]
    assert run_sweep(args, units_per_batch=4, sweep_dir="sweep", progress=False) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    units = tmp_path / "sweep" / "units"
    first = torch.load(tmp_path / "sweep" / "input.pt")
    assert first.shape == (10, 1, 32, 32)
    assert sorted(p.name for p in (tmp_path / "sweep" / "images").iterdir()) == [f"output-{c}.png" for c in range(10)]
    assert Image.open(tmp_path / "sweep" / "grid.png").size == (4 * 34 + 2, 3 * 34 + 2)  # 10 images: 4 columns, 3 rows

    # An interruption that lost units 2, 5 and 9: only those run again, in new company, to the same images.
    for c in (2, 5, 9):
        (units / f"output-{c}.pt").unlink()
    kept = {p.name: p.stat().st_mtime_ns for p in units.iterdir()}
    assert run_sweep(args, units_per_batch=2, sweep_dir="sweep", progress=False) == [[2, 5], [9]]
    assert {p.name: p.stat().st_mtime_ns for p in units.iterdir() if p.name in kept} == kept
    torch.testing.assert_close(torch.load(tmp_path / "sweep" / "input.pt"), first, rtol=1e-5, atol=1e-6)
    assert run_sweep(args, units_per_batch=2, sweep_dir="sweep", progress=False) == []  # nothing left to do
    assert not (tmp_path / "single").exists()  # the config's SaveImages does not write chunks: the sweep does

    # and a plain one-batch run of the same units gives the same images
    single = cli(["fit", *args]).model.images()
    torch.testing.assert_close(first, single, rtol=1e-5, atol=1e-6)


def test_exception_sweep_needs_units(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="units_per_batch must be >= 1, got 0"):
        run_sweep(ARGS, units_per_batch=0, progress=False)
    with pytest.raises(ValueError, match="needs an objective with units"):
        run_sweep([*ARGS, "--model.objective", '{"class_path": "NegativeCrossEntropy"}'], progress=False)
    assert not (tmp_path / "results" / "sweep").exists()  # nothing half-written


@pytest.mark.slow
def test_sweep_command_on_two_processes(tmp_path, monkeypatch):
    """`inputopt sweep ... --trainer.devices 2 --trainer.strategy ddp`: every unit gathered on rank 0."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=str(CONFIG.parents[1]), PYTHONWARNINGS="ignore")
    command = [str(Path(sys.executable).with_name("inputopt")), "sweep", "--units_per_batch", "4",
               "--sweep_dir", "ddp", *ARGS, "--model.objective.init_args.unit", "all",
               "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp"]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "10 units (10 computed now, 0 already done)" in done.stdout
    assert "units: 100%" in done.stderr and "10/10" in done.stderr
    assert sorted(p.name for p in (tmp_path / "ddp" / "units").iterdir()) == [f"output-{c}.pt" for c in range(10)]
    two = torch.load(tmp_path / "ddp" / "input.pt")
    monkeypatch.chdir(tmp_path)
    run_sweep([*ARGS, "--model.objective.init_args.unit", "all"], units_per_batch=10, sweep_dir=str(tmp_path / "one"),
              progress=False)
    torch.testing.assert_close(two, torch.load(tmp_path / "one" / "input.pt"), rtol=1e-4, atol=1e-5)
