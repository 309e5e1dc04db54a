"""Multi-device runs: a sweep gives every process its own chunks of units, with the images of one process
(docs/design.md, rule 5); a fit runs on one device and says to sweep instead."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch import Trainer

from inputopt import InputOptimization
from inputopt.commands.sweep import run_sweep
from inputopt.objectives import UnitActivation
from inputopt.problem import Problem

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "digits.yaml"
ARGS = ["--config", str(CONFIG), "--trainer.max_steps", "5", "--trainer.logger", "false",
        "--model.problem.objective.init_args.unit", "all"]


def test_exception_fit_on_several_devices_points_to_the_sweep():
    module = InputOptimization(Problem("digits", UnitActivation(None, unit=[1, 2])), image_shape=(1, 32, 32))
    module.trainer = Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False)  # not launched
    with pytest.raises(ValueError, match=r"runs 2 processes\. For many units on several devices, use `inputopt sweep`"):
        module.setup("fit")
    module.trainer = Trainer(accelerator="cpu", devices=1, logger=False)
    module.setup("fit")  # one device: fine


@pytest.mark.slow
def test_sweep_on_two_processes_gives_the_images_of_one_process(tmp_path, monkeypatch):
    """`inputopt sweep ... --trainer.devices 2 --trainer.strategy ddp` on 2 CPU processes (gloo): each process
    computes and writes its own chunks, rank 0 gathers them, and the images are those of one process."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONWARNINGS="ignore")
    command = [str(Path(sys.executable).with_name("inputopt")), "sweep", "--units_per_batch", "3", "--sweep_dir",
               "ddp", *ARGS, "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp"]
    done = subprocess.run(command, check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    output = done.stdout + done.stderr
    assert "10 units (10 computed now, 0 already done)" in output
    assert "units: 100%" in output and "10/10" in output
    assert "Testing" not in output and "Params" not in output  # one bar of units: no test bar, no model summary
    out = tmp_path / "ddp"
    assert sorted(p.name for p in (out / "units").iterdir()) == sorted(f"output-{c}.pt" for c in range(10))
    assert sorted(p.name for p in (out / "images").iterdir()) == sorted(f"output-{c}.png" for c in range(10))
    assert (out / "grid.png").is_file() and yaml.safe_load((out / "sweep.yaml").read_text())["steps"] == 5
    two = torch.load(out / "input.pt")

    monkeypatch.chdir(tmp_path)
    assert run_sweep(ARGS, units_per_batch=10, sweep_dir="one", progress=False) == [list(range(10))]
    one = torch.load(tmp_path / "one" / "input.pt")
    assert two.shape == one.shape == (10, 1, 32, 32)
    torch.testing.assert_close(two, one, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(two, one[[1, 0, *range(2, 10)]])  # in unit order


@pytest.mark.slow
def test_fit_on_two_processes_from_the_command_line_is_refused_before_any_launch(tmp_path):
    """`inputopt fit ... --trainer.devices 2 --trainer.strategy ddp`: the one-device refusal, once, before Lightning
    starts a second process (which used to find the run folder locked by the first)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    command = [str(Path(sys.executable).with_name("inputopt")), "fit", *ARGS, "--trainer.accelerator", "cpu",
               "--trainer.devices", "2", "--trainer.strategy", "ddp"]
    done = subprocess.run(command, check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr[-3000:]
    assert done.stderr.count("runs 2 processes. For many units on several devices, use `inputopt sweep`") == 1
    assert "Initializing distributed" not in done.stdout + done.stderr and "run.lock" not in done.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written


ATLAS = """
problem: {network: digits}
image_shape: [1, 32, 32]
layers:
  - {name: features.4, units: [0, 1, 2], crop_size: 8, context: 16}
  - {name: null, units: [0, 1, 2], display: clamp}
visualization: {steps: 2, units_per_batch: 2}
examples:
  dataset: {class_path: inputopt.data.Digits, init_args: {split: test, limit: 21}}
  k: 2
  batch_size: 4
trainer: {accelerator: cpu}
progress: false
"""


def _assert_same_examples(two, one, path: str = "examples") -> None:
    """Two processes find the same examples as one: the same images, positions and boxes exactly; the same scores
    within float rounding (a batch of other images can round a layer's output in its last bit, e.g. a matrix
    product of 4 rows against one of 3)."""
    if isinstance(one, dict):
        assert two.keys() == one.keys(), path
        for key in one:
            _assert_same_examples(two[key], one[key], f"{path}.{key}")
    elif isinstance(one, list):
        assert len(two) == len(one), path
        for i, (a, b) in enumerate(zip(two, one)):
            _assert_same_examples(a, b, f"{path}[{i}]")
    elif isinstance(one, float):
        assert two == pytest.approx(one, rel=1e-6, abs=1e-6), path
    else:
        assert two == one, path


@pytest.mark.slow
def test_atlas_on_two_processes_from_the_command_line_equals_one(tmp_path, monkeypatch):
    """`inputopt atlas ... --trainer.devices 2 --trainer.strategy ddp` (gloo): the visualizations and dataset
    examples of one process, and the site."""
    from inputopt.cli import main

    (tmp_path / "atlas.yaml").write_text(ATLAS)
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    command = [str(Path(sys.executable).with_name("inputopt")), "atlas", "--config", "atlas.yaml", "--atlas_dir", "two",
               "--trainer.devices", "2", "--trainer.strategy", "ddp"]
    done = subprocess.run(command, check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    monkeypatch.chdir(tmp_path)
    main(["atlas", "--config", "atlas.yaml", "--atlas_dir", "one", "--trainer.devices", "1"])
    for name in ("two", "one"):
        assert (tmp_path / name / "index.html").is_file() and not (tmp_path / name / "run.lock").exists()
    layer = Path("layers") / "features.4"
    logits = next(p.name for p in (tmp_path / "one" / "layers").iterdir() if p.name.startswith("output"))
    for part in (layer / "examples" / "examples.json", Path("layers") / logits / "examples" / "examples.json"):
        _assert_same_examples(json.loads((tmp_path / "two" / part).read_text()),
                              json.loads((tmp_path / "one" / part).read_text()))
    two, one = (torch.load(tmp_path / name / layer / "seed-0" / "input.pt") for name in ("two", "one"))
    assert two.shape == (3, 1, 32, 32)
    torch.testing.assert_close(two, one, rtol=1e-4, atol=1e-5)
