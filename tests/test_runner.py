"""The attack runner: metrics equal a direct computation, whatever the batches or the processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer

from inputopt.attacks import FMN, PGD
from inputopt.callbacks.attack import SaveAttackResults
from inputopt.data import Digits, ImageFolder
from inputopt.functional.random import RowRandom
from inputopt.functional.sphere import sphere_label_change
from inputopt.runners.attack import AttackEvaluation
from tests.conftest import command_on_two_processes_and_one

ROOT = Path(__file__).resolve().parents[1]
QUIET = dict(logger=False, enable_progress_bar=False, enable_model_summary=False)


def assert_same_rows(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b) and all(x.keys() == y.keys() for x, y in zip(a, b))
    for x, y in zip(a, b):
        for key, value in x.items():
            assert value == (pytest.approx(y[key], rel=1e-5, nan_ok=True) if isinstance(value, float) else y[key]), key


def evaluate(attack, dataset, **kwargs):
    runner = AttackEvaluation(attack, dataset, **kwargs)
    Trainer(**QUIET).test(runner, verbose=False)
    return runner


@pytest.fixture(scope="module")
def data():
    return Digits("test", limit=40)


def test_metrics_equal_a_direct_computation(data):
    attack = PGD("digits", eps=[0.03, 0.08], alpha=0.02, steps=5)
    runner = evaluate(attack, data, batch_size=16, sphere_points=20)
    images, labels = data.tensors
    results = attack.run(images, labels, keys=range(len(labels)))
    correct = results[0].clean_predictions == labels
    for row, result in zip(runner.results, results):
        assert row["clean_accuracy"] == pytest.approx(correct.float().mean().item())
        assert row["robust_accuracy"] == pytest.approx((result.predictions == labels).float().mean().item())
        fooled = result.success & correct
        assert row["success_rate"] == pytest.approx(fooled[correct].float().mean().item())
        assert row["norm_median"] == pytest.approx(result.norms[fooled].median().item())
        assert row["norm_mean"] == pytest.approx(result.norms[fooled].mean().item())
        fractions = [sphere_label_change(attack.predict, result.clean[i], 2 * (result.images[i] - result.clean[i]).norm().item(),
                                         20, RowRandom(0).stream("sphere.points").generator(i))
                     for i in torch.nonzero(fooled).flatten().tolist()]
        assert row["sphere_label_change"] == pytest.approx(sum(fractions) / len(fractions))


def test_batch_size_does_not_change_the_results(data):
    attack = PGD("digits", eps=0.05, alpha=0.02, steps=3)
    a = evaluate(attack, data, batch_size=40, sphere_points=10).results
    b = evaluate(attack, data, batch_size=7, sphere_points=10).results
    assert_same_rows(a, b)


def test_minimal_norm_attack_with_budgets(data):
    runner = evaluate(FMN("digits", norm="L2", steps=20, eps=[0.5, 1.0, 100.0]), data, sphere_points=0)
    robust = [row["robust_accuracy"] for row in runner.results]
    assert robust == sorted(robust, reverse=True) and robust[-1] <= 0.05
    assert "sphere_label_change" not in runner.results[0]


def test_save_attack_results_writes_table_and_picture(tmp_path, data):
    runner = AttackEvaluation(PGD("digits", eps=[0.05, 0.1], alpha=0.02, steps=2), data, sphere_points=0,
                              num_examples=3)
    Trainer(**QUIET, callbacks=[SaveAttackResults(tmp_path, scale=2)]).test(runner, verbose=False)
    rows = json.loads((tmp_path / "results.json").read_text())
    assert [r["eps"] for r in rows] == [0.05, 0.1]
    assert_same_rows(rows, runner.results)
    assert (tmp_path / "results.csv").read_text().splitlines()[0].startswith("eps,norm,clean_accuracy,robust_accuracy")
    from PIL import Image

    with Image.open(tmp_path / "examples.png") as picture:  # 3 rows: clean + (adversarial, perturbation) x 2
        width, height = picture.size  # 5 columns of tiles of 64 pixels, a title line, a caption under each row
        assert width >= 5 * 64 and height == 14 + 3 * (64 + 2 + 14)


def test_image_folder_gives_tensors_of_the_network_shape(tmp_path):
    from PIL import Image

    for name, value in [("cat", 30), ("dog", 200)]:
        (tmp_path / name).mkdir()
        Image.new("RGB", (40, 50), (value, value, value)).save(tmp_path / name / "a.png")
    data = ImageFolder(tmp_path, image_shape=(1, 32, 32), class_to_idx={"cat": 7, "dog": 3})
    image, label = data[1]
    assert image.shape == (1, 32, 32) and label == 3 and image.max() == pytest.approx(200 / 255)
    with pytest.raises(ValueError, match="image_shape"):
        ImageFolder(tmp_path, image_shape=(2, 32, 32))
    with pytest.raises(FileNotFoundError, match="no folder"):
        ImageFolder(tmp_path / "missing")


def test_runner_rejects_bad_arguments(data):
    attack = PGD("digits", eps=0.1)
    with pytest.raises(TypeError, match="Attack"):
        AttackEvaluation("PGD", data)
    with pytest.raises(ValueError, match="batch_size"):
        AttackEvaluation(attack, data, batch_size=0)
    with pytest.raises(ValueError, match="sphere_points"):
        AttackEvaluation(attack, data, sphere_points=-1)
    with pytest.raises(TypeError, match="map-style"):
        AttackEvaluation(attack, iter([]))


@pytest.mark.slow
def test_attack_command_on_two_processes_equals_one(tmp_path, monkeypatch):
    """`inputopt attack` with 2 CPU processes (gloo): each sample on one process, the metrics of one process."""
    folders = command_on_two_processes_and_one(
        ["attack", "--config", str(ROOT / "configs" / "digits_pgd.yaml"), "--model.dataset.init_args.limit", "31",
         "--model.batch_size", "8", "--model.sphere_points", "10", "--model.attack.init_args.steps", "3",
         "--model.attack.init_args.eps", "[0.05, 0.1]", "--trainer.logger", "false",
         "--trainer.enable_progress_bar", "false"], "inputopt.callbacks.attack.SaveAttackResults", tmp_path,
        monkeypatch)
    runs = {devices: json.loads((out / "results.json").read_text()) for devices, out in folders.items()}
    assert_same_rows(runs[2], runs[1])
    assert runs[1][0]["clean_accuracy"] == pytest.approx(1.0)


def test_results_json_is_strict_json(tmp_path, data):
    """An attack that fools nothing has no perturbation norms (NaN): results.json writes null, not NaN."""
    runner = AttackEvaluation(PGD("digits", eps=0.0, steps=1), data, sphere_points=0, num_examples=0)
    Trainer(**QUIET, callbacks=[SaveAttackResults(tmp_path)]).test(runner, verbose=False)

    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")

    rows = json.loads((tmp_path / "results.json").read_text(), parse_constant=refuse)
    assert rows[0]["norm_median"] is None
