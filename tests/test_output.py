"""What a run prints: the library's step bar and summary whatever progress bar the Trainer has (``rich`` installed
included), and none of Lightning's notices that are not the user's business (tips, a torch deprecation warning)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import RichProgressBar

from inputopt import InputOptimization, UnitActivation
from inputopt.problem import Problem
from tests.conftest import make_tiny_net

ROOT = Path(__file__).resolve().parents[1]
# Lightning's defaults become its Rich bar and summary once rich is installed (the dev extra installs it)
needs_rich = pytest.mark.skipif(__import__("importlib").util.find_spec("rich") is None, reason="rich not installed")


def module() -> InputOptimization:
    return InputOptimization(Problem(make_tiny_net(), UnitActivation("features.4", unit=[0, 1])),
                             image_shape=(3, 32, 32))


@needs_rich
@pytest.mark.parametrize("explicit", [False, True], ids=["lightning_default", "explicit_rich_bar"])
def test_python_fit_shows_steps_out_of_max_steps_and_the_input_summary(explicit, tmp_path, capsys, caplog):
    from lightning.pytorch.utilities.imports import _RICH_AVAILABLE

    assert _RICH_AVAILABLE  # so that Lightning's default bar and summary are the Rich ones
    trainer = Trainer(max_steps=3, logger=False, enable_checkpointing=False, default_root_dir=tmp_path,
                      callbacks=[RichProgressBar()] if explicit else [])
    caplog.set_level("INFO")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(module())
    out = capsys.readouterr().out + caplog.text  # the bar on stdout, the summary through Lightning's logger
    assert "steps" in out and "3/3" in out
    assert "Epoch 0" not in out
    assert "Optimized input: 2 images of shape (3, 32, 32)" in out  # InputSummary, not Lightning's table
    assert "Trainable params" not in out
    # the library's own loader: no torch deprecation warning from inside Lightning
    assert not [w for w in caught if "LeafSpec" in str(w.message)]


@needs_rich
@pytest.mark.slow
def test_command_line_is_quiet_and_shows_steps(tmp_path):
    """``inputopt fit`` as a user runs it (a new process, rich installed): the step bar and the summary, no tip,
    no LeafSpec warning."""
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "inputopt.cli", "fit", "--config", "configs/digits.yaml",
                           "--trainer.max_steps", "3"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "steps" in output and "3/3" in output and "Epoch 0" not in output
    assert "Optimized input: 10 images of shape (1, 32, 32)" in output
    assert "Tip" not in output and "litlogger" not in output
    assert "LeafSpec" not in output and "Warning" not in output


def run_command(tmp_path, *args: str, **env: str) -> subprocess.CompletedProcess:
    if not (tmp_path / "configs").exists():
        shutil.copytree(ROOT / "configs", tmp_path / "configs")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **env}
    env.pop("INPUTOPT_DEBUG", None) if "INPUTOPT_DEBUG" not in env else None
    return subprocess.run([sys.executable, "-m", "inputopt.cli", *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)


def test_command_prints_the_librarys_error_as_one_line(tmp_path):
    done = run_command(tmp_path, "fit", "--config", "configs/digits.yaml", "--trainer.max_steps", "0")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if "error" in line]
    assert lines == ["inputopt fit: error: max_steps must be an int >= 1, the number of optimization steps "
                     "(Trainer(max_steps=N), --trainer.max_steps N), got 0"]
    assert "--debug or INPUTOPT_DEBUG=1" in done.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
@pytest.mark.parametrize("debug", [("--debug",), ()], ids=["flag", "environment"])
def test_debug_keeps_the_traceback(debug, tmp_path):
    env = {} if debug else {"INPUTOPT_DEBUG": "1"}
    done = run_command(tmp_path, "fit", *debug, "--config", "configs/digits.yaml", "--trainer.max_steps", "0", **env)
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "ValueError: max_steps must be an int >= 1" in done.stderr
