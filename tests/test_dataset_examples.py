"""Dataset examples: the runner's top-k (and bottom-k, percentiles) equals a direct ranking of the whole data
set, whatever the batches, the processes, a streamed data set or an interruption; crops, files and the command."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer
from torch.utils.data import IterableDataset, TensorDataset

from inputopt.callbacks.examples import SaveDatasetExamples, examples_sheet
from inputopt.capture import capture_activations
from inputopt.data import UnreadableImageError
from inputopt.functional.receptive_field import crop_box
from inputopt.networks import NetworkSpec
from inputopt.objectives import ChannelSum, Margin, UnitActivation
from inputopt.problem import Problem
from inputopt.runners.examples import DatasetExamples
from tests.conftest import command_on_two_processes_and_one, make_tiny_net

ROOT = Path(__file__).resolve().parents[1]
QUIET = dict(logger=False, enable_progress_bar=False, enable_model_summary=False)
MEAN, STD = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.rand(37, 3, 32, 32, generator=g), torch.randint(0, 10, (37,), generator=g))


def tiny(layer="features.4", units=(0, 3, 7), normalized=True):
    """The problem of the tests: the tiny network (with an input normalization) and ``ChannelSum(layer, units)``."""
    units = list(units) if not isinstance(units, str) else units
    network = NetworkSpec(make_tiny_net(), mean=MEAN, std=STD) if normalized else make_tiny_net()
    return Problem(network, ChannelSum(layer, channel=units))


def run(dataset, **kwargs):
    runner = DatasetExamples(tiny(kwargs.pop("layer", "features.4"), kwargs.pop("units", [0, 3, 7])), dataset, **kwargs)
    Trainer(**QUIET).test(runner, verbose=False)
    return runner


def channel_maxima(data):
    images = data.tensors[0]
    normalized = (images - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        acts = capture_activations(make_tiny_net(), normalized, ["features.4"])["features.4"][:, [0, 3, 7]]
    return acts.flatten(2).max(2)


def test_top_k_equals_a_ranking_of_the_whole_data_set(data):
    runner = run(data, k=5, batch_size=8)
    maxima, where = channel_maxima(data)
    values, indices = maxima.T.topk(5, dim=1)
    torch.testing.assert_close(torch.tensor(runner.results["values"]), values)
    assert runner.results["indices"] == indices.tolist()
    flat = where.T.gather(1, indices)
    assert runner.results["positions"] == [[[int(p) // 16, int(p) % 16] for p in row] for row in flat]
    assert runner.results["labels"] == data.tensors[1][indices].tolist()  # the class of every example
    assert runner.dataset_max() == {u: row[0] for u, row in zip([0, 3, 7], values.tolist())}
    assert run(data, k=5, batch_size=37).results == runner.results


def test_bottom_k_and_percentiles_equal_a_ranking_of_the_whole_data_set(data):
    runner = run(data, k=4, batch_size=8, bottom=True, percentiles=[99, 90, 50, 0])
    maxima, _ = channel_maxima(data)
    lowest, lowest_indices = maxima.T.topk(4, dim=1, largest=False)
    torch.testing.assert_close(torch.tensor(runner.results["bottom"]["values"]), lowest)
    assert runner.results["bottom"]["indices"] == lowest_indices.tolist()
    found = runner.results["percentiles"]
    assert found["sampled"] == 37  # the sample holds the whole (small) data set: the percentiles are exact
    ordered = maxima.T.sort(dim=1).values
    for column, q in enumerate([99, 90, 50, 0]):
        rank = max(0, math.ceil(q / 100 * 37) - 1)  # nearest rank
        torch.testing.assert_close(torch.tensor(found["values"])[:, column], ordered[:, rank])
    assert runner.example_images("bottom").shape[:2] == (3, 4)
    assert runner.example_images("percentiles").shape[:2] == (3, 4)
    # a sample smaller than the data: real images, spread over it, the same whatever the batches
    small = run(data, k=2, batch_size=5, percentiles=[50], sample_size=10)
    assert small.results["percentiles"]["sampled"] == 10
    assert run(data, k=2, batch_size=37, percentiles=[50], sample_size=10).results == small.results


class Stream(IterableDataset):
    """The samples of ``data`` as a stream; ``unreadable`` indices raise UnreadableImageError (an iterator, not a
    generator, so that it goes on after one, as a reader of files does)."""

    def __init__(self, data, unreadable=()):
        self.data, self.unreadable = data, set(unreadable)

    def __iter__(self):
        return StreamIterator(self)


class StreamIterator:
    def __init__(self, stream):
        self.stream, self.index = stream, 0

    def __next__(self):
        index = self.index
        if index >= len(self.stream.data):
            raise StopIteration
        self.index += 1
        if index in self.stream.unreadable:
            raise UnreadableImageError(f"item {index} is corrupt")
        return self.stream.data[index]


class Corrupt(torch.utils.data.Dataset):
    def __init__(self, data, unreadable):
        self.data, self.unreadable = data, set(unreadable)

    def __len__(self):
        return len(self.data)

    def __getitem__(self, index):
        if index in self.unreadable:
            raise UnreadableImageError(f"item {index} is corrupt")
        return self.data[index]


def test_a_streamed_data_set_gives_the_result_of_a_map_style_one(data):
    mapped = run(data, k=4, batch_size=8, bottom=True)
    streamed = run(Stream(data), k=4, batch_size=8, bottom=True)
    assert streamed.results == mapped.results
    torch.testing.assert_close(streamed.example_images(), mapped.example_images())


def test_unreadable_images_are_skipped_and_counted(data):
    bad = [0, 5, 36]
    kept = TensorDataset(*(t[[i for i in range(37) if i not in bad]] for t in data.tensors))
    expected = run(kept, k=3, batch_size=8).results
    index_of = [i for i in range(37) if i not in bad]
    for dataset in (Corrupt(data, bad), Stream(data, bad)):
        runner = run(dataset, k=3, batch_size=8)
        assert runner.results["skipped"] == 3
        # the same ranking, over the readable images
        assert runner.results["indices"] == [[index_of[i] for i in row] for row in expected["indices"]]
        assert runner.results["values"] == expected["values"]
    with pytest.raises(UnreadableImageError):
        run(Corrupt(data, bad), k=3, skip_unreadable=False)


class Interrupt(Exception):
    pass


def test_an_interrupted_pass_resumes_with_the_result_of_an_uninterrupted_one(tmp_path, data):
    from lightning.pytorch import Callback

    class StopAfter(Callback):
        def on_test_batch_end(self, trainer, module, outputs, batch, batch_idx, dataloader_idx=0):
            if batch_idx == 2:  # after the save at batch 2 and one more batch, lost
                raise Interrupt

    whole = run(data, k=4, batch_size=4, bottom=True, percentiles=[50])
    # map-style, streamed, and streamed by 2 loader workers (the loader's batches still cover a prefix)
    for case, (dataset, workers) in enumerate([(data, 0), (Stream(data), 0), (Stream(data), 2)]):
        state = tmp_path / f"case{case}"
        options = dict(k=4, batch_size=4, bottom=True, percentiles=[50], state_dir=state, save_every=2,
                       num_workers=workers)
        runner = DatasetExamples(tiny(), dataset, **options)
        with pytest.raises(Interrupt):
            Trainer(**QUIET, callbacks=[StopAfter()]).test(runner, verbose=False)
        assert (state / "examples-state-rank0.pt").is_file() and not list(state.glob("*.partial"))
        if case == 0:  # the state of another problem (another input normalization) is refused
            other = Problem(NetworkSpec(make_tiny_net(), mean=MEAN, std=[0.3, 0.3, 0.3]), ChannelSum("features.4", [0, 3, 7]))
            with pytest.raises(ValueError, match="another pass"):
                Trainer(**QUIET).test(DatasetExamples(other, dataset, **options), verbose=False)
        runner = DatasetExamples(tiny(), dataset, **options)
        Trainer(**QUIET).test(runner, verbose=False)
        assert runner.skip_batches == 2 and runner.results == whole.results
        assert not (state / "examples-state-rank0.pt").exists()  # removed when the pass ends
    other = DatasetExamples(tiny(units=[0, 3]), data, k=4, batch_size=4, state_dir=tmp_path / "x", save_every=2)
    (tmp_path / "x").mkdir()
    torch.save({"fingerprint": "another", "batches": 1, "skipped": 0, "seen": 4, "metric": {}},
               tmp_path / "x" / "examples-state-rank0.pt")
    with pytest.raises(ValueError, match="another pass"):
        Trainer(**QUIET).test(other, verbose=False)


def test_dense_layers_and_all_units(data):
    runner = run(data, layer="classifier.3", units="all", k=2)
    assert runner.units == list(range(10)) and runner.map_shape is None
    assert all(p is None for row in runner.results["positions"] for p in row)
    assert runner.example_images().shape == (10, 2, 3, 32, 32)


def test_examples_are_cropped_to_the_receptive_field(data):
    runner = run(data, k=3)
    field = runner.receptive_field()
    assert runner.results["field_size"] == list(field.size)
    crops = runner.example_images()
    assert crops.shape[-2:] == tuple(field.size)
    for row, unit in enumerate([0, 3, 7]):
        for rank in range(3):
            box = runner.results["boxes"][row][rank]
            assert box == list(field.box(unit, runner.results["positions"][row][rank]))
            image = data[runner.results["indices"][row][rank]][0]
            top, left, bottom, right = crop_box(image, box, field.size)
            torch.testing.assert_close(crops[row, rank], image[:, top:bottom, left:right])
    override = run(data, k=3, crop_size=5)  # crop_size: an override of the field's size
    assert override.example_images().shape == (3, 3, 3, 5, 5)


def test_one_unit_and_one_example(data):
    """torchmetrics squeezes a single value to a 0-d tensor; the results keep their (units, k) rows."""
    runner = run(data, units=[3], k=1)
    assert len(runner.results["indices"]) == 1 and len(runner.results["indices"][0]) == 1
    assert runner.example_images().shape[:2] == (1, 1)


def test_save_dataset_examples_writes_json_and_a_readable_sheet(tmp_path, data):
    runner = DatasetExamples(tiny(units=range(8), normalized=False), data, k=4, bottom=True)
    Trainer(**QUIET, callbacks=[SaveDatasetExamples(tmp_path, tile=40)]).test(runner, verbose=False)
    assert json.loads((tmp_path / "examples.json").read_text()) == json.loads(json.dumps(runner.results))
    from PIL import Image

    sheet = examples_sheet(runner, tile=40)
    with Image.open(tmp_path / "examples.png") as picture:
        assert picture.size == (sheet.shape[2], sheet.shape[1])
    # 8 units in blocks on a grid, not one strip: the sheet is at most twice as tall as wide
    assert sheet.shape[1] <= 2 * sheet.shape[2] and sheet.shape[2] <= 2 * sheet.shape[1]
    # every tile shows its example (the sheet's pixels are the crops', scaled to the tile)
    assert (sheet < 1).any()


def test_save_dataset_examples_without_the_picture(tmp_path, data):
    runner = DatasetExamples(tiny(units=range(2), normalized=False), data, k=2)
    callback = SaveDatasetExamples(tmp_path, picture=False)
    Trainer(**QUIET, callbacks=[callback]).test(runner, verbose=False)
    assert callback.paths == [tmp_path / "examples.json"] and sorted(p.name for p in tmp_path.iterdir()) == [
        "examples.json"]


def test_exception(data):
    with pytest.raises(ValueError, match="unknown layer"):
        DatasetExamples(tiny("features.40", [0]), data)
    with pytest.raises(ValueError, match=r"channel 8 is out of range for layer 'features.4', which has 8 channels"):
        DatasetExamples(tiny(units=[8]), data)
    with pytest.raises(ValueError, match="crop_size"):
        DatasetExamples(tiny(units=[0]), data, crop_size=33)
    with pytest.raises(ValueError, match="percentiles"):
        DatasetExamples(tiny(units=[0]), data, percentiles=[101])
    with pytest.raises(ValueError, match="group"):
        run(data, k=2).example_images("bottom")
    with pytest.raises(ValueError, match="empty"):
        DatasetExamples(tiny(units=[0]), [])
    with pytest.raises(RuntimeError, match="no results"):
        DatasetExamples(tiny(units=[0]), data).example_images()
    with pytest.raises(ValueError, match=r"dataset examples needs a UnitsObjective objective \(e.g. ChannelSum"):
        DatasetExamples(Problem(make_tiny_net(), Margin()), data)
    with pytest.raises(ValueError, match="dataset examples needs an objective in its problem"):
        DatasetExamples(Problem(make_tiny_net()), data)


def test_one_problem_gives_the_examples_of_the_units_it_visualizes(data):
    """The problem of a visualization (a unit at the map's centre, priors, a parameterization) gives the dataset
    examples of its units: the layer and the units resolved from its objective, each unit scored by its maximum
    over positions whatever the objective's own reduction."""
    from inputopt.params import FourierImage
    from inputopt.priors import TotalVariation

    problem = Problem(NetworkSpec(make_tiny_net(), mean=MEAN, std=STD), UnitActivation("features.4", unit="all"),
                      [TotalVariation(0.1)], FourierImage())
    runner = DatasetExamples(problem, data, k=3)
    assert problem.objective.resolved and runner.units == problem.objective.units == list(range(8))
    assert runner.layer == "features.4" and runner.network is problem.network
    Trainer(**QUIET).test(runner, verbose=False)
    by_sum = run(data, units="all", k=3)  # ChannelSum on the same layer: the same maxima over positions
    assert runner.results["values"] == by_sum.results["values"]
    assert runner.results["indices"] == by_sum.results["indices"]
    maxima, _ = channel_maxima(data)
    torch.testing.assert_close(torch.tensor(runner.results["values"])[[0, 3, 7]], maxima.T.topk(3, dim=1).values)


def test_examples_command_from_the_config(tmp_path, monkeypatch, capsys):
    from inputopt.cli import main

    main(["--help"])
    assert "\n  examples " in capsys.readouterr().out
    monkeypatch.chdir(tmp_path)
    main(["examples", "--config", str(ROOT / "configs" / "digits_examples.yaml"), "--model.dataset.init_args.limit",
          "20", "--model.problem.objective.init_args.channel", "[2, 9]", "--model.k", "3", "--trainer.enable_progress_bar", "false"])
    written = json.loads((tmp_path / "results" / "digits_examples" / "examples.json").read_text())
    assert written["units"] == [2, 9] and written["layer"] == "features.4" and len(written["indices"][1]) == 3
    assert list((tmp_path / "results" / "digits_examples" / "run").glob("events.out.tfevents.*"))


@pytest.mark.slow
def test_examples_command_on_two_processes_equals_one(tmp_path, monkeypatch):
    """`inputopt examples` with 2 CPU processes (gloo): each image on one process, the merged top-k of one."""
    folders = command_on_two_processes_and_one(
        ["examples", "--config", str(ROOT / "configs" / "digits_examples.yaml"), "--model.dataset.init_args.limit",
         "101", "--model.batch_size", "16", "--model.k", "5", "--trainer.logger", "false",
         "--trainer.enable_progress_bar", "false"], "inputopt.callbacks.examples.SaveDatasetExamples", tmp_path,
        monkeypatch)
    runs = {devices: json.loads((out / "examples.json").read_text()) for devices, out in folders.items()}
    assert all((out / "examples.png").is_file() for out in folders.values())
    assert runs[2] == runs[1]
    assert len(runs[1]["units"]) == 32 and all(len(row) == 5 for row in runs[1]["indices"])


def make_folder(root, count=12, corrupt=1):
    """A tiny ImageFolder of random JPEGs in two classes, with ``corrupt`` files that are not images."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for index in range(count):
        folder = root / ("cat" if index % 2 else "dog")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(folder / f"{index:03}.jpg")
    for index in range(corrupt):
        (root / "dog" / f"zz-broken-{index}.jpg").write_bytes(b"not a jpeg")
    return root


def test_an_image_folder_from_the_config_with_unreadable_files(tmp_path, monkeypatch):
    from inputopt.cli import main

    root = make_folder(tmp_path / "images")
    monkeypatch.chdir(tmp_path)
    main(["examples", "--config", str(ROOT / "configs" / "imagefolder_examples.yaml"), "--model.problem.network",
          "digits", "--model.problem.objective.init_args.layer", "features.4",
          "--model.problem.objective.init_args.channel", "[0, 1]", "--model.dataset.init_args.root", str(root),
          "--model.dataset.init_args.image_shape", "[1, 32, 32]", "--model.k", "3", "--model.num_workers", "0",
          "--model.batch_size", "4", "--trainer.enable_progress_bar", "false"])
    out = tmp_path / "results" / "imagefolder_examples"
    written = json.loads((out / "examples.json").read_text())
    assert written["skipped"] == 1  # the broken file, skipped and counted
    assert written["class_names"] == {"0": "cat", "1": "dog"}
    assert all(label in (0, 1) for row in written["labels"] for label in row)
    assert len(written["bottom"]["indices"][0]) == 3 and written["percentiles"]["q"] == [99.0, 90.0, 50.0]
    assert (out / "examples.png").is_file() and not list((out / "state").glob("*.pt"))


def test_webdataset_shards_give_the_result_of_the_image_folder(tmp_path):
    pytest.importorskip("webdataset")
    import io
    import tarfile

    from inputopt.data import ImageFolder, WebDataset

    root = make_folder(tmp_path / "images", count=10, corrupt=1)
    folder = ImageFolder(root, image_shape=(1, 32, 32))
    shards = []
    for shard, chunk in enumerate((folder.samples[:6], folder.samples[6:])):  # in the folder's order
        path = tmp_path / f"shard-{shard}.tar"
        with tarfile.open(path, "w") as tar:
            for number, (file, label) in enumerate(chunk):
                for extension, data in (("jpg", Path(file).read_bytes()), ("cls", str(label).encode())):
                    info = tarfile.TarInfo(f"{shard}{number:04}.{extension}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        shards.append(str(path))
    problem = Problem("digits", ChannelSum("features.4", channel=[0, 3]))
    expected = DatasetExamples(problem, folder, k=3, bottom=True)
    streamed = DatasetExamples(problem, WebDataset(shards, image_shape=(1, 32, 32)), k=3, bottom=True)
    for runner in (expected, streamed):
        Trainer(**QUIET).test(runner, verbose=False)
    for key in ("values", "indices", "labels", "boxes", "bottom", "skipped"):
        assert streamed.results[key] == expected.results[key], key
    assert streamed.results["skipped"] == 1
    torch.testing.assert_close(streamed.example_images(), expected.example_images())


def test_the_progress_bar_shows_images_per_second(data, capsys):
    from lightning.pytorch.callbacks import TQDMProgressBar

    runner = DatasetExamples(tiny(units=[0]), data, k=2, batch_size=8)
    Trainer(logger=False, enable_model_summary=False, callbacks=[TQDMProgressBar()]).test(runner, verbose=False)
    captured = capsys.readouterr()
    assert re.search(r"[0-9.]+ images/s", captured.out + captured.err)


@pytest.mark.slow
def test_a_pass_killed_with_sigkill_resumes_with_the_result_of_an_uninterrupted_one(tmp_path):
    """`inputopt examples` killed (SIGKILL, no clean-up at all) once it has saved a state, then run again."""
    import signal
    import time

    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    state = tmp_path / "state"
    command = [str(Path(sys.executable).with_name("inputopt")), "examples", "--config",
               str(ROOT / "configs" / "digits_examples.yaml"), "--model.batch_size", "1", "--model.k", "4",
               "--model.state_dir", str(state), "--model.save_every", "20", "--trainer.logger", "false",
               "--trainer.enable_progress_bar", "false", "--trainer.accelerator", "cpu", "--trainer.callbacks",
               json.dumps([{"class_path": "inputopt.callbacks.examples.SaveDatasetExamples",
                            "init_args": {"dirpath": str(tmp_path / "out")}}])]
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not (state / "examples-state-rank0.pt").is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "the pass ended before it could be killed: " + process.stderr.read().decode()[-2000:]
    process.send_signal(signal.SIGKILL)
    process.wait()
    saved = torch.load(state / "examples-state-rank0.pt", weights_only=True)
    assert 0 < saved["batches"] < 450 and not (tmp_path / "out" / "examples.json").exists()
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    resumed = json.loads((tmp_path / "out" / "examples.json").read_text())
    from inputopt.data import Digits

    whole = DatasetExamples(Problem("digits", ChannelSum("features.4", channel="all")), Digits("test"), k=4,
                            bottom=True, percentiles=[99, 90, 50], batch_size=1)  # the batches of the killed pass: the same float rounding
    Trainer(**QUIET).test(whole, verbose=False)
    assert resumed == json.loads(json.dumps(whole.results)) and not list(state.glob("*.pt"))
