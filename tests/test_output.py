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
from tests.conftest import make_tiny_net

ROOT = Path(__file__).resolve().parents[1]
rich = pytest.importorskip("rich")  # Lightning's defaults become its Rich bar and summary once rich is installed


def module() -> InputOptimization:
    return InputOptimization(make_tiny_net(), UnitActivation("features.4", unit=[0, 1]), image_shape=(3, 32, 32))


@pytest.mark.parametrize("callbacks", [[], [RichProgressBar()]], ids=["lightning_default", "explicit_rich_bar"])
def test_python_fit_shows_steps_out_of_max_steps_and_the_input_summary(callbacks, tmp_path, capsys, caplog):
    from lightning.pytorch.utilities.imports import _RICH_AVAILABLE

    assert _RICH_AVAILABLE  # so that Lightning's default bar and summary are the Rich ones
    trainer = Trainer(max_steps=3, logger=False, enable_checkpointing=False, default_root_dir=tmp_path,
                      callbacks=callbacks)
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
