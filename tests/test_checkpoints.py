"""Checkpoints: small (image parameters and optimizer state only), resumable to the same result, left behind on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from inputopt.commands.fit import cli

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "vgg16_paper_towel.yaml"
# The reference config on the tiny test network, so that each run takes a second.
TINY = ["--model.problem.network", "tests.conftest.TinyConvNet", "--model.image_shape",
        "[3, 32, 32]", "--model.problem.objective.init_args.unit", "[3, 7]", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false"]


def run(*args: str):
    return cli(["fit", "--config", str(CONFIG), *TINY, *args])


def test_resumed_run_equals_uninterrupted_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    whole = run("--trainer.max_steps", "12", "--trainer.logger.init_args.version", "whole").model
    halfway = run("--trainer.max_steps", "6", "--trainer.logger.init_args.version", "split").model.images()
    assert not torch.allclose(halfway, whole.images())
    resumed = run("--trainer.max_steps", "12", "--trainer.logger.init_args.version", "split", "--ckpt_path", "last")
    assert resumed.trainer.global_step == 12
    torch.testing.assert_close(resumed.model.images(), whole.images(), rtol=1e-6, atol=1e-7)


def test_checkpoint_size_and_contents(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    module = run("--trainer.max_steps", "4").model
    path = tmp_path / "results/vgg16_paper_towel/run/checkpoints/last.ckpt"
    checkpoint = torch.load(path, weights_only=True)
    assert set(checkpoint["state_dict"]) == {"param.pixels", "done"}
    adam = checkpoint["optimizer_states"][0]["state"][0]
    assert set(adam) == {"step", "exp_avg", "exp_avg_sq"}
    # the pixels + Adam's two moments, plus a few KB of hyperparameters and loop state: nothing else
    assert path.stat().st_size < 3 * module.param.pixels.numel() * 4 + 64_000
    assert checkpoint["hyper_parameters"]["problem"]["objective"]["init_args"]["unit"] == [3, 7]


@pytest.mark.slow
def test_sigterm_leaves_a_checkpoint_that_resumes(tmp_path):
    inputopt = str(Path(sys.executable).with_name("inputopt"))
    command = [inputopt, "fit", "--config", str(CONFIG), *TINY, "--trainer.max_steps", "100000"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONWARNINGS="ignore")
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    periodic = tmp_path / "results/vgg16_paper_towel/run/checkpoints/last.ckpt"
    deadline = time.monotonic() + 240
    while not periodic.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)  # the first periodic checkpoint (step 50) proves the run is going
    assert periodic.exists(), process.communicate()[0][-3000:]
    time.sleep(1.0)
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=120)[0]
    assert "run interrupted at step" in output, output[-3000:]
    step = torch.load(periodic, weights_only=True)["global_step"]
    assert step > 50  # the interruption's state, not the last periodic one

    resumed = subprocess.run([*command[:-1], str(step + 3), "--ckpt_path", "last"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=240)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert torch.load(periodic, weights_only=True)["global_step"] == step + 3


def test_exception_leaves_a_checkpoint(tmp_path):
    from lightning.pytorch import Callback, Trainer

    from inputopt import InputOptimization, UnitActivation
    from inputopt.problem import Problem
    from inputopt.callbacks.checkpoints import CheckpointOnInterrupt
    from tests.conftest import make_tiny_net

    class Crash(Callback):
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == 3:
                raise RuntimeError("out of memory, say")

    module = InputOptimization(Problem(make_tiny_net(), UnitActivation("features.4", unit=[0, 1])),
                               image_shape=(3, 32, 32))
    saver = CheckpointOnInterrupt(dirpath=tmp_path)
    trainer = Trainer(max_steps=100, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, callbacks=[Crash(), saver])
    with pytest.raises(RuntimeError, match="out of memory, say"):
        trainer.fit(module)
    saved = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert saver.saved == tmp_path / "last.ckpt" and saved["global_step"] == 3
    assert torch.equal(saved["state_dict"]["param.pixels"], module.param.pixels.detach())
