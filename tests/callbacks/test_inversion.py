"""`inputopt invert` and SaveInversions: the files of a feature inversion run, the picture of images above their
inversions, the TensorBoard image."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from inputopt.callbacks.inversion import SaveInversions, pairs_grid
from inputopt.cli import main
from inputopt.data import Digits
from inputopt.objectives import ChannelSum
from inputopt.problem import Problem
from inputopt.runners.examples import DatasetExamples

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "digits_inversion.yaml"


def test_invert_command_writes_its_files_and_gets_closer_than_the_start(tmp_path, monkeypatch, capsys):
    main(["--help"])
    assert "\n  invert " in capsys.readouterr().out
    monkeypatch.chdir(tmp_path)
    main(["invert", "--config", str(CONFIG), "--model.dataset.init_args.limit", "3", "--model.steps", "20",
          "--trainer.enable_progress_bar", "false", "--trainer.accelerator", "cpu"])
    out = tmp_path / "results" / "digits_inversion"
    saved = torch.load(out / "inversions.pt")
    assert saved["indices"].tolist() == [0, 1, 2] and saved["images"].shape == (3, 1, 32, 32)
    assert saved["layer"] == "features.9" and saved["metric"] == "l2"
    with open(out / "scores.csv") as file:
        rows = list(csv.DictReader(file))
    assert [int(r["index"]) for r in rows] == [0, 1, 2]
    torch.testing.assert_close(torch.tensor([float(r["score"]) for r in rows]), saved["scores"])
    start, final = (torch.tensor([float(r[key]) for r in rows]) for key in ("start_score", "score"))
    assert (final > start).all() and (-final < 0.5 * -start).all()  # the feature distance more than halved
    with Image.open(out / "inversions.png") as picture:  # the config's scale 3: 96-px digits, 2-px padding
        assert picture.size == (3 * 98 + 2, 2 * 98 + 2)
    events = EventAccumulator(str(out / "run"), size_guidance={"images": 0})
    events.Reload()
    assert "inversions" in events.Tags()["images"]


def test_pairs_grid_puts_each_row_of_images_above_its_inversions():
    originals, inversions = torch.zeros(3, 1, 4, 4), torch.ones(3, 1, 4, 4)
    grid = pairs_grid(originals, inversions, columns=2)  # rows: originals 0-1, inversions 0-1, original 2, inversion 2
    assert grid.shape == (3, 4 * 6 + 2, 2 * 6 + 2)
    cell = lambda row, column: grid[:, 2 + 6 * row:6 + 6 * row, 2 + 6 * column:6 + 6 * column]  # noqa: E731
    assert cell(0, 1).eq(0).all() and cell(1, 1).eq(1).all() and cell(2, 0).eq(0).all() and cell(3, 0).eq(1).all()
    assert cell(2, 1).eq(1).all()  # white filling
    with pytest.raises(ValueError, match="differ"):
        pairs_grid(originals, inversions[:2])


def test_exception_save_inversions(tmp_path):
    with pytest.raises(ValueError, match="columns must be an int >= 1"):
        SaveInversions(tmp_path, columns=0)
    with pytest.raises(ValueError, match="scale must be an int >= 1"):
        SaveInversions(tmp_path, scale=0)
    runner = DatasetExamples(Problem("digits", ChannelSum("features.4", [0, 1])), Digits(limit=2), k=1)
    trainer = Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False,
                      callbacks=[SaveInversions(tmp_path)])
    with pytest.raises(TypeError, match="SaveInversions works with FeatureInversion, not DatasetExamples"):
        trainer.test(runner, verbose=False)
