"""Multi-device runs: every process holds the whole parameterization and scores only its own rows (docs/design.md, rule 5)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from inputopt import InputOptimization, PixelImage
from inputopt.cli import cli
from inputopt.objectives import ChannelSum, NegativeCrossEntropy
from inputopt.priors import MultiScaleEdgeEnergy

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "digits.yaml"
QUICK = ["--trainer.max_steps", "5", "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary",
         "false", "--model.objective.init_args.unit", "all"]


@pytest.mark.parametrize("world_size", [2, 3, 4])
def test_sharded_gradients_averaged_equal_the_full_gradient(world_size):
    """What DDP does with the losses of training_step: average the N processes' gradients."""
    module = InputOptimization("digits", ChannelSum("features.4", channel="all"), [MultiScaleEdgeEnergy(weight=0.3)],
                               image_shape=(1, 32, 32), param=PixelImage(mean=0.5, std=0.1))
    tensor = module.param.tensor
    full = torch.autograd.grad(module.compute_loss(module.param())["loss"].sum(), tensor)[0]
    grads = []
    for rank in range(world_size):
        rows = module.shard_rows(rank, world_size)
        loss = module.compute_loss(module.param(), rows)["loss"].sum() * world_size
        grads.append(torch.autograd.grad(loss, tensor)[0])
        outside = torch.ones(tensor.shape[0], dtype=torch.bool)
        outside[rows] = False
        assert grads[-1][outside].abs().max() == 0  # a process touches only its own rows
    scale = full.abs().max().item()  # convolutions of other batch sizes round differently
    torch.testing.assert_close(torch.stack(grads).mean(0), full, rtol=1e-4, atol=1e-5 * scale)
    covered = torch.cat([module.shard_rows(r, world_size) for r in range(world_size)])
    assert covered.tolist() == list(range(tensor.shape[0]))


def test_labels_follow_their_rows_when_scoring_a_subset():
    module = InputOptimization("digits", NegativeCrossEntropy(target=[0, 1, 2, 3]), image_shape=(1, 32, 32))
    whole = module.compute_loss(module.param())["objective"]
    part = module.compute_loss(module.param(), torch.tensor([1, 3]))["objective"]
    torch.testing.assert_close(part, whole[[1, 3]])
    assert not torch.allclose(part, whole[[0, 2]])


@pytest.mark.slow
def test_two_processes_give_the_images_of_one_process(tmp_path, monkeypatch):
    """The `inputopt` command with 2 CPU processes (gloo) writes what one process computes."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONWARNINGS="ignore")
    command = [str(Path(sys.executable).with_name("inputopt")), "fit", "--config", str(CONFIG), *QUICK,
               "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
               "--trainer.logger.init_args.version", "ddp"]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = tmp_path / "results" / "digits" / "ddp"
    names = sorted(p.name for p in (run_dir / "images").iterdir())
    assert names == sorted(f"output-{c}.png" for c in range(10))  # every unit, gathered on rank 0
    assert (run_dir / "grid.png").is_file()
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1  # TensorBoard from rank 0 only
    two = torch.load(run_dir / "input.pt")

    monkeypatch.chdir(tmp_path)
    one = cli(["fit", "--config", str(CONFIG), *QUICK, "--trainer.logger.init_args.version", "one"]).model.images()
    assert two.shape == one.shape == (10, 1, 32, 32)
    torch.testing.assert_close(two, one, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(two, torch.load(tmp_path / "results/digits/one/input.pt")[[1, 0, *range(2, 10)]])
