"""Callbacks: TensorBoard images and scalars, files on disk, prediction tables, the sphere check."""

from __future__ import annotations

import logging

import numpy as np
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torchvision.utils import make_grid

from inputopt import ChannelSum, InputOptimization, MultiScaleEdgeEnergy, NegativeCrossEntropy, UnitActivation
from inputopt.callbacks.images import LogImages, SaveImages
from inputopt.callbacks.tables import PredictionTable, SphereCheck
from inputopt.functional import to_display
from inputopt.problem import Problem
from tests.conftest import make_tiny_net


def quiet_trainer(steps: int, **kwargs) -> Trainer:
    options = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False)
    options.update(kwargs)
    return Trainer(max_steps=steps, **options)


def test_log_images_and_scalars_read_back_from_tensorboard(tmp_path):
    module = InputOptimization(Problem(make_tiny_net(), ChannelSum("features.4", channel=[1, 2, 3]),
                                       [MultiScaleEdgeEnergy(0.1)]), image_shape=(3, 32, 32), log_per_image=True)
    logger = TensorBoardLogger(tmp_path, name="run", version=0)
    quiet_trainer(6, logger=logger, log_every_n_steps=1, callbacks=[LogImages(every_n_steps=3)]).fit(module)

    events = EventAccumulator(str(tmp_path / "run" / "version_0"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    assert [e.step for e in events.Images("inputs")] == [0, 3, 6]
    final = events.Images("inputs/final")
    assert [e.step for e in final] == [6]
    # a 2x2 grid of 32x32 images with 2 px padding: (2·34 + 2) pixels a side
    assert (final[0].width, final[0].height) == (70, 70)
    for tag in ("objective", "loss", "prior/MultiScaleEdgeEnergy"):
        assert [e.step for e in events.Scalars(tag)] == [0, 1, 2, 3, 4, 5], tag
    assert [e.step for e in events.Scalars("objective/features.4-2")] == [0, 1, 2, 3, 4, 5]
    first = module.compute_loss(module.start)
    for i, unit in enumerate([1, 2, 3]):
        assert abs(events.Scalars(f"objective/features.4-{unit}")[0].value - first["objective"][i].item()) < 1e-5  # step 0 logs the terms of the starting images
    assert abs(events.Scalars("objective")[0].value - first["objective"].mean().item()) < 1e-5
    assert abs(events.Scalars("loss")[0].value - first["loss"].mean().item()) < 1e-5
    import io

    from PIL import Image

    decoded = torch.from_numpy(np.asarray(Image.open(io.BytesIO(final[0].encoded_image_string)).convert("RGB")))
    decoded = decoded.reshape(-1, 3).long()
    expected = make_grid(to_display(module.images()), nrow=2, padding=2, pad_value=1.0)
    expected = (expected.permute(1, 2, 0).reshape(-1, 3) * 255 + 0.5).clamp(0, 255).to(torch.uint8)
    assert (decoded - expected.long()).abs().max() <= 1


def test_save_images_writes_grid_singles_and_tensor(tmp_path):
    module = InputOptimization(Problem(make_tiny_net(), UnitActivation("features.4", unit=[0, 5])),
                               image_shape=(3, 32, 32))
    saver = SaveImages(tmp_path / "out", display="clamp", scale=2)
    quiet_trainer(2, callbacks=[saver]).fit(module)
    assert (tmp_path / "out" / "grid.png").is_file()
    assert sorted(p.name for p in (tmp_path / "out" / "images").iterdir()) == ["features.4-0.png", "features.4-5.png"]
    assert torch.equal(torch.load(tmp_path / "out" / "input.pt"), module.images())


def test_prediction_table_and_sphere_check(tmp_path, caplog):
    torch.manual_seed(0)
    module = InputOptimization(Problem(make_tiny_net(), NegativeCrossEntropy()), init=torch.rand(3, 3, 32, 32),
                               optimizer=lambda p: torch.optim.SGD(p, lr=0.5))
    table = PredictionTable(every_n_steps=2)
    sphere = SphereCheck(factor=2.0, num_points=200, seed=1)
    with caplog.at_level(logging.INFO):
        quiet_trainer(5, callbacks=[table, sphere]).fit(module)
    assert table.steps == [0, 2, 4]
    assert torch.equal(table.predictions[0], module.targets)
    assert "Predicted class after each step" in caplog.text and "Random-sphere check" in caplog.text
    distance = (module.images() - module.start).flatten(1).norm(dim=1)
    torch.testing.assert_close(sphere.radii, 2 * distance)
    assert sphere.fractions.shape == (3,) and ((sphere.fractions >= 0) & (sphere.fractions <= 1)).all()
    again = SphereCheck(factor=2.0, num_points=200, seed=1).check(module)
    torch.testing.assert_close(again, sphere.fractions, equal_nan=True)  # reproducible with a seed


def test_model_summary_calls_the_input_images(tmp_path, caplog):
    """The summary at fit start says what is optimized (the images, their shape), not "Trainable params"."""
    module = InputOptimization(Problem("digits", UnitActivation(None, unit=[3, 8]), [MultiScaleEdgeEnergy(0.1)]))
    trainer = Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      default_root_dir=tmp_path)
    with caplog.at_level(logging.INFO):
        trainer.fit(module)
    assert "Optimized input: 2 images of shape (1, 32, 32), PixelImage: 2.0 K trainable values" in caplog.text
    assert "Priors: MultiScaleEdgeEnergy(weight=0.1" in caplog.text
    assert "Trainable params" not in caplog.text
    quiet = Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                    enable_model_summary=False, default_root_dir=tmp_path)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        quiet.fit(InputOptimization(Problem("digits", UnitActivation(None, unit=3))))
    assert "Optimized input" not in caplog.text


def test_no_notice_that_the_modules_own_summary_and_bar_replace_lightnings(tmp_path):
    """Lightning announces every callback of configure_callbacks that replaces a Trainer callback; for the
    module's own summary and bar, at every fit, that is noise: only that notice is dropped."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = records.append
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    logger.addHandler(handler)
    level, logger.level = logger.level, logging.INFO
    try:
        Trainer(max_steps=1, logger=False, enable_checkpointing=False, default_root_dir=tmp_path).fit(
            InputOptimization(Problem("digits", UnitActivation(None, unit=3))))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    messages = [r.getMessage() for r in records]
    assert not [m for m in messages if "configure_callbacks` will override" in m]
    assert any("max_steps=1` reached" in m for m in messages)  # the other notices still come through


def test_progress_bar_counts_steps_out_of_max_steps_also_after_a_resume(tmp_path, capsys):
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    from inputopt.callbacks.progress import StepProgressBar

    def fit(steps: int, ckpt_path=None, bar: bool = True) -> Trainer:
        module = InputOptimization(Problem(make_tiny_net(), ChannelSum("features.4", channel=[0, 1])),
                                   image_shape=(3, 16, 16))
        trainer = quiet_trainer(steps, enable_progress_bar=bar, logger=CSVLogger(tmp_path, name="run", version=7),
                                enable_checkpointing=True, callbacks=[ModelCheckpoint(tmp_path / "ckpt", save_last=True)])
        trainer.fit(module, ckpt_path=ckpt_path)
        return trainer

    trainer = fit(4)
    bar = trainer.progress_bar_callback
    assert isinstance(bar, StepProgressBar)
    assert (bar.train_progress_bar.n, bar.train_progress_bar.total) == (4, 4)
    shown = [line.strip() for line in capsys.readouterr().out.split("\r") if line.strip()]
    assert shown[0].startswith("steps:   0%") and " 0/4 " in shown[0]
    assert shown[-1].startswith("steps: 100%") and "| 4/4 [" in shown[-1]
    assert "loss=" in shown[-1] and "objective=" in shown[-1]
    assert not [line for line in shown if "Epoch" in line or "v_num" in line or "/?" in line]

    fit(6, ckpt_path=tmp_path / "ckpt" / "last.ckpt")  # the resumed bar starts at the checkpoint's step
    shown = [line.strip() for line in capsys.readouterr().out.split("\r") if line.strip()]
    steps = [line.split("|")[2].split()[0] for line in shown if line.startswith("steps:")]
    assert steps[0] == "4/6" and steps[-1] == "6/6" and "5/6" in steps

    trainer = fit(2, bar=False)  # no bar asked for: none added
    assert trainer.progress_bar_callback is None
    assert not [c for c in trainer.callbacks if isinstance(c, StepProgressBar)]


def test_prediction_table_is_compact_for_many_images(tmp_path, caplog):
    torch.manual_seed(0)
    module = InputOptimization(Problem(make_tiny_net(), NegativeCrossEntropy()), init=3 * torch.randn(12, 3, 32, 32),
                               optimizer=lambda p: torch.optim.SGD(p, lr=10.0), freeze_done=True)
    table = PredictionTable(max_rows=4)
    with caplog.at_level(logging.INFO):
        quiet_trainer(4, callbacks=[table]).fit(module)
    start = module.targets
    changed = [(p != start).float().mean().item() for p in table.predictions]
    assert changed[0] == 0 and changed[-1] > 0  # the attack moved some labels, the table must show it
    torch.testing.assert_close(table.changed(), torch.tensor(changed))
    assert torch.equal(table.done[-1], module.done.cpu())
    lines = table.table().splitlines()
    assert lines[0].split() == ["step", "changed", "done"]
    for line, step, fraction, done in zip(lines[1:6], table.steps, changed, table.done):
        assert line.split() == [str(step), f"{fraction:.1%}", f"{done.float().mean().item():.1%}"]
    assert lines[6] == "first 4 of 12 images: start -> end (changed at step)"
    assert len(lines) == 11  # the header, 5 steps, the title, 4 example images
    for i, line in enumerate(lines[7:]):
        history = [int(p[i]) for p in table.predictions]
        first = next((s for s, c in zip(table.steps, history) if c != history[0]), None)
        assert line.split() == ["image", str(i), str(history[0]), "->", str(history[-1]),
                                f"({first})" if first is not None else "(unchanged)"]
    assert "\n".join(lines) in caplog.text  # the compact one is printed: 12 images > max_rows

    full = table.table(compact=False).splitlines()  # forced: a column per image
    assert full[0].split()[1:] == [w for i in range(12) for w in ("image", str(i))]
    assert [line.split() for line in full[1:]] == [[str(s), *map(str, p.tolist())]
                                                   for s, p in zip(table.steps, table.predictions)]
    table.max_rows = 12  # 12 images, not more than max_rows: the full table by default
    assert table.table().splitlines() == full
