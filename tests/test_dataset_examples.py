"""Dataset examples: the runner's top-k equals a direct ranking of the whole data set, whatever the batches
or the processes; crops, files and the command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer
from torch.utils.data import TensorDataset

from inputopt.callbacks.examples import SaveDatasetExamples
from inputopt.capture import capture_activations
from inputopt.runners.examples import DatasetExamples, crop_around
from tests.conftest import make_tiny_net

ROOT = Path(__file__).resolve().parents[1]
QUIET = dict(logger=False, enable_progress_bar=False, enable_model_summary=False)
MEAN, STD = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.rand(37, 3, 32, 32, generator=g), torch.randint(0, 10, (37,), generator=g))


def run(dataset, **kwargs):
    runner = DatasetExamples(make_tiny_net(), kwargs.pop("layer", "features.4"), kwargs.pop("units", [0, 3, 7]),
                             dataset, mean=MEAN, std=STD, **kwargs)
    Trainer(**QUIET).test(runner, verbose=False)
    return runner


def test_top_k_equals_a_ranking_of_the_whole_data_set(data):
    runner = run(data, k=5, batch_size=8)
    images = data.tensors[0]
    normalized = (images - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        acts = capture_activations(make_tiny_net(), normalized, ["features.4"])["features.4"][:, [0, 3, 7]]
    maxima, where = acts.flatten(2).max(2)
    values, indices = maxima.T.topk(5, dim=1)
    torch.testing.assert_close(torch.tensor(runner.results["values"]), values)
    assert runner.results["indices"] == indices.tolist()
    flat = where.T.gather(1, indices)
    assert runner.results["positions"] == [[[int(p) // 16, int(p) % 16] for p in row] for row in flat]
    assert runner.dataset_max() == {u: row[0] for u, row in zip([0, 3, 7], values.tolist())}
    assert run(data, k=5, batch_size=37).results == runner.results


def test_dense_layers_and_all_units(data):
    runner = run(data, layer="classifier.3", units="all", k=2)
    assert runner.units == list(range(10)) and runner.map_shape is None
    assert all(p is None for row in runner.results["positions"] for p in row)
    assert runner.example_images().shape == (10, 2, 3, 32, 32)


def test_crop_around_the_maximal_position(data):
    image = torch.arange(32 * 32.0).view(1, 32, 32)
    # cell (3, 5) of a 16x16 map covers pixels 6-7 x 10-11: an 8-pixel crop centred on it starts at (3, 7)
    torch.testing.assert_close(crop_around(image, 3 * 16 + 5, (16, 16), 8), image[:, 3:11, 7:15])
    torch.testing.assert_close(crop_around(image, 0, (16, 16), 8), image[:, :8, :8])  # shifted inside
    torch.testing.assert_close(crop_around(image, 255, (16, 16), 8), image[:, 24:, 24:])
    runner = run(data, k=3, crop_size=8)
    crops = runner.example_images()
    assert crops.shape == (3, 3, 3, 8, 8)
    y, x = runner.results["positions"][1][0]
    torch.testing.assert_close(crops[1, 0], crop_around(data[runner.results["indices"][1][0]][0], y * 16 + x, (16, 16), 8))


def test_one_unit_and_one_example(data):
    """torchmetrics squeezes a single value to a 0-d tensor; the results keep their (units, k) rows."""
    runner = run(data, units=[3], k=1)
    assert len(runner.results["indices"]) == 1 and len(runner.results["indices"][0]) == 1
    assert runner.example_images().shape[:2] == (1, 1)


def test_save_dataset_examples_writes_json_and_grid(tmp_path, data):
    runner = DatasetExamples(make_tiny_net(), "features.4", [1, 2], data, k=4)
    Trainer(**QUIET, callbacks=[SaveDatasetExamples(tmp_path, scale=2)]).test(runner, verbose=False)
    assert json.loads((tmp_path / "examples.json").read_text()) == runner.results
    from PIL import Image

    with Image.open(tmp_path / "examples.png") as picture:  # 2 rows of 4 images, 64 px each, 2 px padding
        assert picture.size == (4 * 66 + 2, 2 * 66 + 2)


def test_exception(data):
    net = make_tiny_net()
    with pytest.raises(ValueError, match="unknown layer"):
        DatasetExamples(net, "features.40", [0], data)
    with pytest.raises(ValueError, match=r"units must be ints in \[0, 8\)"):
        DatasetExamples(net, "features.4", [8], data)
    with pytest.raises(ValueError, match="crop_size"):
        DatasetExamples(net, "features.4", [0], data, crop_size=33)
    with pytest.raises(ValueError, match="empty"):
        DatasetExamples(net, "features.4", [0], [])
    with pytest.raises(RuntimeError, match="no results"):
        DatasetExamples(net, "features.4", [0], data).example_images()


def test_examples_command_from_the_config(tmp_path, monkeypatch, capsys):
    from inputopt.cli import main

    main(["--help"])
    assert "\n  examples " in capsys.readouterr().out
    monkeypatch.chdir(tmp_path)
    main(["examples", "--config", str(ROOT / "configs" / "digits_examples.yaml"), "--model.dataset.init_args.limit",
          "20", "--model.units", "[2, 9]", "--model.k", "3", "--trainer.enable_progress_bar", "false"])
    written = json.loads((tmp_path / "results" / "digits_examples" / "examples.json").read_text())
    assert written["units"] == [2, 9] and written["layer"] == "features.4" and len(written["indices"][1]) == 3
    assert list((tmp_path / "results" / "digits_examples" / "run").glob("events.out.tfevents.*"))


@pytest.mark.slow
def test_examples_command_on_two_processes_equals_one(tmp_path, monkeypatch):
    """`inputopt examples` with 2 CPU processes (gloo): each image on one process, the merged top-k of one."""
    from inputopt.cli import main

    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONWARNINGS="ignore")
    base = [str(Path(sys.executable).with_name("inputopt")), "examples", "--config",
            str(ROOT / "configs" / "digits_examples.yaml"), "--model.dataset.init_args.limit", "101",
            "--model.batch_size", "16", "--model.k", "5", "--model.crop_size", "8", "--trainer.logger", "false",
            "--trainer.enable_progress_bar", "false", "--trainer.accelerator", "cpu"]
    runs = {}
    for devices in (2, 1):  # 2 processes from the command line; 1 in this process
        extra = ["--trainer.devices", str(devices)] + (["--trainer.strategy", "ddp"] if devices > 1 else [])
        out = tmp_path / f"devices{devices}"
        args = [*base, *extra, "--trainer.callbacks", json.dumps(
            [{"class_path": "inputopt.callbacks.examples.SaveDatasetExamples", "init_args": {"dirpath": str(out)}}])]
        if devices == 1:
            monkeypatch.chdir(tmp_path)
            main(args[1:])
        else:
            done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
            assert done.returncode == 0, done.stderr[-3000:]
        runs[devices] = json.loads((out / "examples.json").read_text())
        assert (out / "examples.png").is_file()
    assert runs[2] == runs[1]
    assert len(runs[1]["units"]) == 32 and all(len(row) == 5 for row in runs[1]["indices"])
