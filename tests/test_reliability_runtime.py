"""Reliability, round 3, the runtime side: a resume fingerprint that covers the Trainer's numerics, atomic and
contained writes, the user's module handed back as given, data sets refused when non-finite or empty, long jobs
that report and stop (docs/cli.md, "Nothing lost, nothing mixed")."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from inputopt import InputOptimization, Problem, UnitActivation
from tests.conftest import make_tiny_net
from tests.test_reliability import module, trainer

ROOT = Path(__file__).resolve().parents[1]


# -- the fingerprint covers the Trainer's numerics ------------------------------------------------------------------
@pytest.mark.parametrize(("change", "field"), [
    ({"precision": "bf16-mixed"}, "precision: checkpoint 32-true, now bf16-mixed"),
    ({"gradient_clip_val": 0.5}, "gradient_clip: checkpoint None, now 0.5 (norm)"),
    ({"gradient_clip_val": 1.0, "gradient_clip_algorithm": "value"}, "gradient_clip: checkpoint None, now 1.0 (value)"),
    ({"accumulate_grad_batches": 2}, "accumulate_grad_batches: checkpoint 1, now 2"),
], ids=["precision", "clip_val", "clip_algorithm", "accumulation"])
def test_resume_with_other_trainer_numerics_is_refused_naming_the_difference(change, field, tmp_path):
    trainer(tmp_path, 2, ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)).fit(module())
    last = tmp_path / "ckpt" / "last.ckpt"
    before = last.read_bytes()
    with pytest.raises(ValueError, match=rf"refusing to resume.*\n  {field}".replace("(", r"\(").replace(")", r"\)")):
        trainer(tmp_path, 4, **change).fit(module(), ckpt_path=last)
    assert last.read_bytes() == before
    resumed = module()
    trainer(tmp_path, 4).fit(resumed, ckpt_path=last)  # the same numerics: resumes
    assert resumed.trainer.global_step == 4


def test_resume_from_the_command_line_with_another_precision_is_refused(tmp_path, monkeypatch):
    from inputopt.commands.fit import cli

    monkeypatch.chdir(tmp_path)
    args = ["fit", "--config", str(ROOT / "configs" / "digits.yaml"), "--trainer.max_steps", "2",
            "--model.problem.objective.init_args.unit", "[0, 1]", "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false"]
    cli(args)
    with pytest.raises(ValueError, match=r"differs from the checkpoint's in gradient_clip:"):
        cli([*args[:4], "4", *args[5:], "--ckpt_path", "last", "--trainer.gradient_clip_val", "0.1"])
    with pytest.raises(ValueError, match=r"differs from the checkpoint's in precision:"):
        cli([*args[:4], "4", *args[5:], "--ckpt_path", "last", "--trainer.precision", "bf16-mixed"])


def test_sweep_folder_refuses_units_of_another_precision(tmp_path, monkeypatch):
    from inputopt.commands.sweep import run_sweep

    monkeypatch.chdir(tmp_path)
    args = ["--config", str(ROOT / "configs" / "digits.yaml"), "--trainer.max_steps", "1", "--trainer.logger", "false"]
    run_sweep([*args, "--model.problem.objective.init_args.unit", "[0, 1]"], units_per_batch=2, sweep_dir="s",
              progress=False)
    with pytest.raises(ValueError, match=r"differs in\n  precision: '32-true' -> 'bf16-mixed'"):
        run_sweep([*args, "--model.problem.objective.init_args.unit", "[2, 3]", "--trainer.precision", "bf16-mixed"],
                  units_per_batch=2, sweep_dir="s", progress=False)
    assert sorted(p.name for p in (tmp_path / "s" / "units").iterdir()) == ["output-0.pt", "output-1.pt"]


# -- the user's module is handed back as it was given ----------------------------------------------------------------
def _users_module():
    net = make_tiny_net().train()
    net.classifier[0].eval()  # a mix of modes and flags, handed back as they were
    net.features[0].weight.requires_grad_(False)
    return net


def _state(net):
    return ({name: m.training for name, m in net.named_modules()},
            {name: p.requires_grad for name, p in net.named_parameters()})


@pytest.mark.parametrize("kind", ["fit", "sweep", "examples", "universal"])
def test_the_users_module_is_handed_back_as_it_was_given(kind, tmp_path):
    """Building a run on a module mid-training, and running it, leaves the module's modes and requires_grad flags
    as they were (they used to be frozen for good at construction)."""
    from torch.utils.data import TensorDataset

    from inputopt.objectives import ChannelSum, Margin
    from inputopt.params import PixelImage
    from inputopt.runners.examples import DatasetExamples
    from inputopt.runners.shared import SharedInputOptimization
    from inputopt.runners.sweep import FeatureSweep
    from inputopt.transforms.insert import AddPerturbation

    net = _users_module()
    given = _state(net)
    data = TensorDataset(torch.rand(6, 3, 32, 32), torch.arange(6))
    run = {"fit": lambda: module(net=net),
           "sweep": lambda: FeatureSweep(Problem(net, UnitActivation("features.4", unit=[0, 1])),
                                         image_shape=(3, 32, 32), steps=2),
           "examples": lambda: DatasetExamples(Problem(net, ChannelSum("features.4", [0, 1])), data, k=2,
                                               batch_size=3),
           "universal": lambda: SharedInputOptimization(
               Problem(net, Margin(), param=PixelImage(mean=0, std=0, eps=0.1)), AddPerturbation(), data,
               batch_size=3)}[kind]()
    assert _state(net) == given  # construction
    seen = []
    hook = net.features[1].register_forward_hook(lambda m, i, o: seen.append((m.training, m.weight.requires_grad)))
    runner = trainer(tmp_path, 2)
    runner.fit(run) if kind in ("fit", "universal") else runner.test(run, verbose=False)
    hook.remove()
    assert seen and set(seen) == {(False, False)}, "the network ran in train mode or with gradients"
    assert _state(net) == given  # the run


# -- atomic, contained writes ----------------------------------------------------------------------------------------
class _FullDisk:
    """A file opened for writing under ``folder`` that takes ``room`` bytes and then fails as a full disk does."""

    def __init__(self, handle, room: int) -> None:
        self._handle, self._room = handle, room

    def write(self, data) -> int:
        import errno

        if len(data) > self._room:
            self._handle.write(bytes(data[:self._room]))
            self._room = 0
            raise OSError(errno.ENOSPC, "No space left on device")
        self._room -= len(data)
        return self._handle.write(data)

    def fileno(self):  # no descriptor: copies go through write()
        import io

        raise io.UnsupportedOperation("fileno")

    def __getattr__(self, name):
        return getattr(self._handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._handle.close()


def _fill_disk(monkeypatch, folder: Path, room: int = 200) -> None:
    """Writes under ``folder`` fail half-way with ENOSPC; the system's temporary folder is another device (a
    rename from it fails with EXDEV, so a move becomes a copy)."""
    import builtins
    import errno
    import os

    real_open, real_rename = builtins.open, os.rename

    def open_(file, mode="r", *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        inside = isinstance(file, (str, os.PathLike)) and str(os.path.realpath(file)).startswith(str(folder))
        return _FullDisk(handle, room) if inside and ("w" in mode or "a" in mode) else handle

    def rename(src, dst, *args, **kwargs):
        if not os.path.realpath(src).startswith(str(folder)):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real_rename(src, dst, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", open_)
    monkeypatch.setattr(os, "rename", rename)


def test_a_full_disk_leaves_no_truncated_checkpoint_and_one_line_error(tmp_path, monkeypatch):
    from inputopt import CheckpointOnInterrupt

    folder = (tmp_path / "ckpt").resolve()
    trainer(tmp_path, 2, ModelCheckpoint(dirpath=folder, save_last=True), CheckpointOnInterrupt()).fit(module())
    last = folder / "last.ckpt"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    _fill_disk(monkeypatch, folder)
    with pytest.raises(OSError, match=r"^could not write .*\.ckpt: No space left on device; (nothing written|the "
                                      r"previous .*\.ckpt is left as it was)$") as caught:
        trainer(tmp_path, 4, ModelCheckpoint(dirpath=folder, save_last=True), CheckpointOnInterrupt()).fit(
            module(), ckpt_path=last)
    monkeypatch.undo()
    assert "\n" not in str(caught.value)
    # whole: the previous checkpoints, no truncated new one, no temporary file left
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_ckpt_path_last_names_a_damaged_last_checkpoint_and_the_intact_one(tmp_path):
    from inputopt.commands.fit import check_last_checkpoint

    folder = tmp_path / "ckpt"
    fit = trainer(tmp_path, 3, ModelCheckpoint(dirpath=folder, every_n_train_steps=2, save_last=True))
    fit.fit(module())
    last = folder / "last.ckpt"
    last.write_bytes(last.read_bytes()[:300])  # truncated
    with pytest.raises(ValueError, match=r"last\.ckpt is damaged .* the intact checkpoint .*step=2\.ckpt \(step 2\) "
                                         r"is the latest to resume from: --ckpt_path .*step=2\.ckpt"):
        check_last_checkpoint(fit)


def test_one_last_checkpoint_after_a_short_run(tmp_path):
    """A 3-step run with ModelCheckpoint(save_last=True) and CheckpointOnInterrupt leaves last.ckpt alone (not
    last.ckpt and last-v1.ckpt), and so does a second run into the folder."""
    from inputopt import CheckpointOnInterrupt

    for _ in range(2):
        trainer(tmp_path, 3, ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=50, save_last=True),
                CheckpointOnInterrupt()).fit(module())
        assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["last.ckpt"]
    assert torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)["global_step"] == 3


def test_a_symlinked_images_folder_is_refused(tmp_path):
    from inputopt import SaveImages

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "images").symlink_to(elsewhere)
    with pytest.raises(ValueError, match=r"images is a symbolic link that leads out of the run folder"):
        trainer(tmp_path, 2, SaveImages(tmp_path / "out")).fit(module())
    assert list(elsewhere.iterdir()) == []


def test_save_images_into_the_users_folder_removes_only_its_own_files(tmp_path, monkeypatch):
    from inputopt import SaveImages

    monkeypatch.chdir(tmp_path)
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "my_photo.png").write_bytes(b"the user's")
    for units in ((0, 1), (2,)):
        trainer(tmp_path, 2, SaveImages(dirpath=".")).fit(module(unit=units))
    assert (tmp_path / "images" / "my_photo.png").read_bytes() == b"the user's"
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == ["features.4-2.png", "my_photo.png"]


@pytest.mark.parametrize("option", [["--trainer.logger", "false"], ["--trainer.fast_dev_run", "true"]],
                         ids=["logger_false", "fast_dev_run"])
def test_without_a_logger_the_command_writes_under_results_not_the_current_folder(option, tmp_path, monkeypatch):
    from inputopt.commands.fit import cli

    monkeypatch.chdir(tmp_path)
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "my_photo.png").write_bytes(b"the user's")
    cli(["fit", "--config", str(ROOT / "configs" / "digits.yaml"), "--trainer.max_steps", "2", *option,
         "--model.problem.objective.init_args.unit", "[0, 1]", "--trainer.enable_progress_bar", "false"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "results"]
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == ["my_photo.png"]
    run = tmp_path / "results" / "fit" / "run"
    assert (run / "grid.png").is_file() and (run / "input.pt").is_file() and (run / "checkpoints" / "last.ckpt").is_file()


def test_an_init_image_of_another_size_is_resized_to_the_runs_shape_or_refused(tmp_path):
    from PIL import Image

    big = tmp_path / "big.png"
    Image.new("L", (64, 48), color=200).save(big)
    run = InputOptimization(Problem("digits", UnitActivation(None, unit=[3])), init=str(big))  # digits: 1x32x32
    assert run.images().shape == (1, 1, 32, 32)
    torch.testing.assert_close(run.images(), torch.full((1, 1, 32, 32), 200 / 255))
    assert InputOptimization(Problem("digits", UnitActivation("features.4", unit=[3])), image_shape=(1, 16, 16),
                             init=str(big)).images().shape == (1, 1, 16, 16)
    huge = tmp_path / "huge.png"
    Image.new("RGB", (1100, 8)).save(huge)
    with pytest.raises(ValueError, match=r"init image .*huge\.png' is 1100x8 pixels, more than 1024 on a side, and no "
                                         r"image_shape says the run's size"):
        InputOptimization(Problem(make_tiny_net(), UnitActivation("features.4", unit=[0])), init=str(huge))


# -- non-finite and empty data sets ------------------------------------------------------------------------------
def _data_runner(kind: str, data):
    from inputopt.attacks import PGD
    from inputopt.objectives import ChannelSum, FeatureMatch, Margin
    from inputopt.params import PixelImage
    from inputopt.problem import Problem
    from inputopt.runners.attack import AttackEvaluation
    from inputopt.runners.examples import DatasetExamples
    from inputopt.runners.inversion import FeatureInversion
    from inputopt.runners.shared import SharedInputOptimization
    from inputopt.transforms.insert import AddPerturbation

    net = make_tiny_net()
    if kind == "examples":
        return DatasetExamples(Problem(net, ChannelSum("features.4", [0, 1])), data, k=2, batch_size=3)
    if kind == "invert":
        return FeatureInversion(Problem(net, FeatureMatch("features.4")), data, steps=1, batch_size=3)
    if kind == "universal":
        return SharedInputOptimization(Problem(net, Margin(), param=PixelImage(mean=0, std=0, eps=0.1)),
                                       AddPerturbation(), data, batch_size=3)
    return AttackEvaluation(PGD(net, eps=[0.05], alpha=0.02, steps=1), data, batch_size=3, sphere_points=0)


@pytest.mark.parametrize("kind", ["attack", "examples", "invert", "universal"])
def test_a_data_set_with_a_non_finite_image_is_refused_naming_the_index(kind, tmp_path):
    from torch.utils.data import TensorDataset

    images = torch.rand(6, 3, 32, 32)
    images[4, 1, 2, 3] = float("nan")
    runner = _data_runner(kind, TensorDataset(images, torch.arange(6)))
    with pytest.raises(ValueError, match=r"non-finite pixels \(NaN or Inf\) in the image at index 4;"):
        run = trainer(tmp_path, 2)
        run.fit(runner) if kind == "universal" else run.test(runner, verbose=False)


@pytest.mark.parametrize("kind", ["attack", "invert"])
def test_an_empty_data_set_is_refused(kind, tmp_path):
    from torch.utils.data import TensorDataset

    with pytest.raises(ValueError, match=r"the data set is empty"):  # when built (invert), or run (attack)
        runner = _data_runner(kind, TensorDataset(torch.rand(0, 3, 32, 32), torch.arange(0)))
        trainer(tmp_path, 2).test(runner, verbose=False)


# -- long jobs report and stop -----------------------------------------------------------------------------------
def test_sphere_check_reports_its_points(capsys):
    from inputopt.functional.sphere import sphere_check, sphere_label_changes

    classify = lambda z: (z.flatten(1).sum(1) > 0).long()  # noqa: E731
    counts = []
    sphere_label_changes(classify, torch.ones(3, 4), [0.5, 0.0, 0.5], n=30, chunk_size=16, on_points=counts.append)
    assert sum(counts) == 60 and len(counts) > 2  # every forward pass reported, the unmoved centre drew nothing
    sphere_check(classify, torch.ones(1, 4), torch.ones(1, 4) - 0.1, n=40, chunk_size=10, progress=True)
    err = capsys.readouterr().err
    assert "random-sphere check" in err and "40/40" in err and "point" in err


@pytest.mark.parametrize("kind", ["sweep", "invert"])
def test_sigterm_stops_a_runner_within_its_inner_loop(kind, tmp_path):
    """SIGTERM (Lightning's received_sigterm) stops a runner at the next step of its inner loop, not at the end
    of a batch of many steps."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException
    from torch.utils.data import TensorDataset

    from inputopt.objectives import FeatureMatch
    from inputopt.problem import Problem
    from inputopt.runners.inversion import FeatureInversion
    from inputopt.runners.sweep import FeatureSweep

    net = make_tiny_net()
    runner = (FeatureSweep(Problem(net, UnitActivation("features.4", unit=[0, 1])), image_shape=(3, 32, 32), steps=200)
              if kind == "sweep" else
              FeatureInversion(Problem(net, FeatureMatch("features.4")),
                               TensorDataset(torch.rand(2, 3, 32, 32), torch.arange(2)), steps=200))
    run = trainer(tmp_path, 1)
    calls = []

    def sigterm_at_the_fifth_forward(*_):
        calls.append(1)
        if len(calls) == 5:
            run._signal_connector.received_sigterm = True

    net.features[0].register_forward_hook(sigterm_at_the_fifth_forward)
    with pytest.raises(SIGTERMException):
        run.test(runner, verbose=False)
    assert len(calls) < 10


def test_example_scripts_write_under_results_unless_told_docs_images():
    """No example script overwrites the committed figures by default (`python examples/shared_input.py universal`
    used to rewrite docs/images/universal_lite0*.png): their default output is under results/, and the docs give
    `--out docs/images` where they quote the command that made a committed figure."""
    import re

    for script in sorted((ROOT / "examples").glob("*.py")):
        code = "\n".join(line for line in script.read_text().splitlines() if not line.lstrip().startswith("#"))
        assert not re.search(r'default=[^,\n]*docs/images|"docs" / "images"', code), script.name


def test_attack_command_prints_autoattacks_per_member_table(tmp_path, monkeypatch, capsys, caplog):
    import logging

    from inputopt.cli import main

    monkeypatch.chdir(tmp_path)
    # Lightning's logger does not propagate to the root (its own handler keeps the stream it found at import, an
    # earlier test's capture in a whole run): listen to it directly
    lightning_logger = logging.getLogger("lightning.pytorch")
    lightning_logger.addHandler(caplog.handler)
    with caplog.at_level(logging.INFO), caplog.at_level(logging.INFO, logger="lightning.pytorch"):
        main(["attack", "--config", str(ROOT / "configs" / "digits_autoattack.yaml"), "--model.dataset.init_args.limit",
              "6", "--model.batch_size", "4", "--model.attack.init_args.steps", "5", "--model.attack.init_args.target_classes",
              "2", "--model.attack.init_args.queries", "20", "--trainer.accelerator",
              "cpu", "--trainer.enable_progress_bar", "false", "--trainer.logger", "false"])
    lightning_logger.removeHandler(caplog.handler)
    captured = capsys.readouterr()  # once: a second call returns only what was printed since the first
    printed = captured.out + captured.err + caplog.text
    assert "robust accuracy after each member:" in printed
    header = next(line for line in printed.splitlines() if line.startswith("eps ") and "clean" in line)
    assert header.split()[:2] == ["eps", "clean"] and "apgd-ce" in header


def test_a_symlinked_sweep_subfolder_is_refused(tmp_path, monkeypatch):
    from inputopt.commands.sweep import run_sweep

    monkeypatch.chdir(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "units").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ValueError, match=r"units is a symbolic link that leads out of the run folder"):
        run_sweep(["--config", str(ROOT / "configs" / "digits.yaml"), "--trainer.max_steps", "1", "--trainer.logger",
                   "false", "--model.problem.objective.init_args.unit", "[0, 1]"], units_per_batch=2, sweep_dir="s",
                  progress=False)
    assert list((tmp_path / "elsewhere").iterdir()) == []


SPAWNED = """
import os, sys, tempfile
import torch.distributed as dist
from inputopt.callbacks.checkpoints import RunLock, RunLockedError
try:
    RunLock(sys.argv[1]).acquire()
    print("refused: no")
except RunLockedError:
    print("refused: yes")
dist.init_process_group("gloo", init_method="file://" + tempfile.mktemp(), rank=0, world_size=1)
lock = RunLock(sys.argv[1]).acquire()
print("held in the group:", lock.held)
lock.release()
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_run_lock_of_the_launcher_is_shared_by_the_processes_it_spawns(tmp_path):
    """ddp_spawn: the launching process holds the run folder; a process it spawned into the run's process group
    shares that hold, where an unrelated process (or its child outside a process group) is refused."""
    import os
    import subprocess
    import sys

    from inputopt.callbacks.checkpoints import RunLock

    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONWARNINGS="ignore")
    with RunLock(tmp_path / "run"):
        done = subprocess.run([sys.executable, "-c", SPAWNED, str(tmp_path / "run")], env=env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.split("\n")[:2] == ["refused: yes", "held in the group: True"]
        assert (tmp_path / "run" / "run.lock").read_text().strip() == str(os.getpid())  # still the launcher's
