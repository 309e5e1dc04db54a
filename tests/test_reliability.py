"""Nothing lost, nothing mixed: setup failures write nothing, non-finite values stop the run, resumes check the
configuration, one run per folder, last.ckpt is the final state, resumes with nothing to do still write."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn

from inputopt import CheckpointOnInterrupt, InputOptimization, SaveImages, UnitActivation
from inputopt.callbacks.checkpoints import RunLock, RunLockedError
from inputopt.commands.fit import cli
from inputopt.engine import NonFiniteError
from inputopt.problem import Problem
from tests.conftest import make_tiny_net

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "vgg16_paper_towel.yaml"
# The reference config on the tiny test network: a second per run.
TINY = ["--model.problem.network", "tests.conftest.TinyConvNet", "--model.image_shape",
        "[3, 32, 32]", "--model.problem.objective.init_args.unit", "[3, 7]", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false"]
RUN = Path("results/vgg16_paper_towel/run")


def run(*args: str, config: Path = CONFIG):
    return cli(["fit", "--config", str(config), *TINY, *args])


def files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def module(unit=(0, 1), net=None, seed=0, **kwargs) -> InputOptimization:
    problem = Problem(net if net is not None else make_tiny_net(), UnitActivation("features.4", unit=list(unit)),
                      seed=seed)
    return InputOptimization(problem, image_shape=(3, 32, 32), **kwargs)


def trainer(tmp_path, max_steps: int, *callbacks, **kwargs) -> Trainer:
    return Trainer(max_steps=max_steps, logger=False, enable_progress_bar=False, enable_model_summary=False,
                   default_root_dir=tmp_path, callbacks=list(callbacks), **kwargs)


# -- 1. a failure before the first step never overwrites existing checkpoints or results ----------------------------
@pytest.mark.parametrize("bad", [
    ["--model.problem.objective.init_args.unit", "[3, 99]"],   # out of range for 10 classes: found at setup
    ["--trainer.precision", "bf16-true"],              # refused at setup
    ["--ckpt_path", "missing.ckpt"],                   # no such checkpoint
], ids=["bad_unit", "refused_precision", "bad_ckpt_path"])
def test_failure_before_first_step_keeps_checkpoint_and_results(bad, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run("--trainer.max_steps", "3")
    before = files(tmp_path / RUN)
    assert "checkpoints/last.ckpt" in before and "input.pt" in before and "config.yaml" in before
    with pytest.raises(Exception):
        run("--trainer.max_steps", "3", *bad)
    after = files(tmp_path / RUN)
    for name in ("checkpoints/last.ckpt", "input.pt", "grid.png", "config.yaml"):
        assert after[name] == before[name], name


# -- 2. non-finite values: refused at construction, or a clear stop that keeps the last finite state ---------------
class NaNAt(UnitActivation):
    """UnitActivation whose row ``row`` is NaN from the ``at``-th call on (one call per step)."""

    def __init__(self, layer, unit, at: int = 2, row: int = 1) -> None:
        super().__init__(layer, unit)
        self.at, self.row, self.calls = at, row, 0

    def forward(self, activations, units=None):
        value = super().forward(activations, units)
        self.calls += 1
        if self.calls > self.at:
            value = value.clone()
            value[self.row] = float("nan")
        return value


class NaNGradientAt(UnitActivation):
    """A finite objective whose gradient is NaN from the ``at``-th call on: sqrt(|a - a|) at 0."""

    def __init__(self, layer, unit, at: int = 2) -> None:
        super().__init__(layer, unit)
        self.at, self.calls = at, 0

    def forward(self, activations, units=None):
        value = super().forward(activations, units)
        self.calls += 1
        return value + (value - value.detach()).abs().sqrt() if self.calls > self.at else value


def test_non_finite_init_is_refused_at_construction():
    init = torch.rand(2, 3, 32, 32)
    init[1, 0, 5, 5] = float("inf")
    with pytest.raises(ValueError, match="init has 1 non-finite values"):
        module(init=init)


def test_non_finite_learning_rate_is_refused_before_the_first_step(tmp_path):
    from functools import partial

    saver = CheckpointOnInterrupt(dirpath=tmp_path / "ckpt")
    with pytest.raises(ValueError, match="learning rate must be a finite number > 0, got inf"):
        trainer(tmp_path, 3, saver).fit(module(optimizer=partial(torch.optim.Adam, lr=float("inf"))))
    assert not (tmp_path / "ckpt").exists()


def test_non_finite_objective_stops_and_keeps_last_finite_state(tmp_path):
    net = make_tiny_net()
    objective = NaNAt("features.4", unit=[0, 1], at=2, row=1)
    run_module = InputOptimization(Problem(net, objective), image_shape=(3, 32, 32))
    saver = CheckpointOnInterrupt(dirpath=tmp_path / "ckpt")
    with pytest.raises(NonFiniteError, match=r"at step 2: objective in rows 1 \(features\.4-1\)") as error:
        trainer(tmp_path, 10, saver, SaveImages(tmp_path / "out")).fit(run_module)
    assert "the (finite) images of step 2 are kept" in str(error.value)
    images = run_module.images()
    assert torch.isfinite(images).all()
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 2
    assert torch.equal(saved["state_dict"]["param.pixels"], run_module.param.pixels.detach())
    assert not (tmp_path / "out" / "input.pt").exists()  # no NaN results


def test_huge_learning_rate_stops_and_keeps_finite_images(tmp_path):
    import re
    from functools import partial

    run_module = module(optimizer=partial(torch.optim.Adam, lr=3e37))  # the images reach ~1e38, then overflow
    saver = CheckpointOnInterrupt(dirpath=tmp_path / "ckpt")
    with pytest.raises(NonFiniteError, match=r"non-finite loss \(NaN or Inf\) at step \d+: objective in rows 0") as error:
        trainer(tmp_path, 10, saver, SaveImages(tmp_path / "out")).fit(run_module)
    step = int(re.search(r"at step (\d+)", str(error.value)).group(1))
    assert torch.isfinite(run_module.images()).all()
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)  # the hparams hold the partial
    assert saved["global_step"] == step > 0 and torch.isfinite(saved["state_dict"]["param.pixels"]).all()
    assert not (tmp_path / "out" / "input.pt").exists()


def test_nan_gradient_writes_no_checkpoint_with_nan_optimizer_state(tmp_path):
    run_module = InputOptimization(Problem(make_tiny_net(), NaNGradientAt("features.4", unit=[0, 1], at=2)),
                                   image_shape=(3, 32, 32))
    saver = CheckpointOnInterrupt(dirpath=tmp_path / "ckpt")
    with pytest.raises(NonFiniteError, match="images went non-finite"):
        trainer(tmp_path, 10, saver).fit(run_module)
    assert torch.isfinite(run_module.images()).all()
    assert not (tmp_path / "ckpt").exists()  # Adam's moments are NaN: such a checkpoint is refused
    with pytest.raises(NonFiniteError, match="exp_avg"):
        run_module.trainer.save_checkpoint(tmp_path / "direct.ckpt")
    assert not (tmp_path / "direct.ckpt").exists()


# -- 3. resuming checks the configuration --------------------------------------------------------------------------
def _first_run(tmp_path, **kwargs) -> Path:
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    trainer(tmp_path, 3, checkpoint).fit(module(**kwargs))
    return tmp_path / "ckpt" / "last.ckpt"


def test_resume_with_another_unit_or_network_is_refused_naming_the_field(tmp_path):
    last = _first_run(tmp_path)
    before = last.read_bytes()
    with pytest.raises(ValueError, match=r"differs from the checkpoint's in objective:\n  objective: checkpoint"):
        trainer(tmp_path, 5, ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)).fit(
            module(unit=(0, 2)), ckpt_path=last)
    with pytest.raises(ValueError, match=r"in network_weights:"):
        trainer(tmp_path, 5).fit(module(net=make_tiny_net(seed=1)), ckpt_path=last)
    with pytest.raises(ValueError, match=r"in seed, optimizer:"):
        from functools import partial
        trainer(tmp_path, 5).fit(module(seed=1, optimizer=partial(torch.optim.SGD, lr=0.1)), ckpt_path=last)
    assert last.read_bytes() == before


def test_resume_mismatch_allowed_by_name_proceeds(tmp_path):
    last = _first_run(tmp_path)
    resumed = module(unit=(0, 2), allow_resume_mismatch=["objective"])
    trainer(tmp_path, 5).fit(resumed, ckpt_path=last)
    assert resumed.trainer.global_step == 5
    with pytest.raises(ValueError, match="allow_resume_mismatch must be a list of fingerprint fields"):
        module(allow_resume_mismatch=["max_steps"])


def test_resume_with_same_config_and_more_steps(tmp_path):
    last = _first_run(tmp_path)
    assert set(torch.load(last, weights_only=True)["inputopt_fingerprint"]) >= {"network", "objective", "seed"}
    resumed = module()
    trainer(tmp_path, 7).fit(resumed, ckpt_path=last)
    assert resumed.trainer.global_step == 7
    whole = module()
    trainer(tmp_path, 7).fit(whole)
    torch.testing.assert_close(resumed.images(), whole.images())


# -- 4. one run folder, one run --------------------------------------------------------------------------------------
def test_second_run_into_a_locked_folder_fails_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        (tmp_path / RUN).mkdir(parents=True)
        (tmp_path / RUN / "run.lock").write_text(f"{holder.pid}\n")
        before = files(tmp_path / "results")
        with pytest.raises(RunLockedError, match=rf"another run \(pid {holder.pid}\) is writing into"):
            run("--trainer.max_steps", "2")
        assert files(tmp_path / "results") == before
    finally:
        holder.kill()
        holder.wait()


def test_stale_lock_is_taken_over_and_released(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / RUN).mkdir(parents=True)
    (tmp_path / RUN / "run.lock").write_text(f"{dead.pid}\n")
    with pytest.warns(UserWarning, match=f"stale lock .* of process {dead.pid}"):
        result = run("--trainer.max_steps", "2")
    assert result.trainer.global_step == 2 and (tmp_path / RUN / "input.pt").exists()
    assert not (tmp_path / RUN / "run.lock").exists()


def test_run_lock_is_released_when_the_run_fails(tmp_path):
    with pytest.raises(KeyError):
        with RunLock(tmp_path):
            assert (tmp_path / "run.lock").read_text() == f"{os.getpid()}\n"
            raise KeyError("a failing run")
    assert not (tmp_path / "run.lock").exists()
    with RunLock(tmp_path):
        pass


# -- 5. a finished run's last.ckpt is its final state ----------------------------------------------------------------
def test_last_checkpoint_is_the_final_step(tmp_path):
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=5, save_last=True)
    run_module = module()
    trainer(tmp_path, 12, checkpoint, CheckpointOnInterrupt()).fit(run_module)
    saved = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 12
    assert torch.equal(saved["state_dict"]["param.pixels"], run_module.param.pixels.detach())
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["epoch=0-step=10.ckpt", "last.ckpt"]


# -- 6. a resume with nothing left to do still writes; an unwritable results folder is found at setup ---------------
@pytest.mark.parametrize("max_steps", ["4", "3"], ids=["at_max_steps", "past_max_steps"])
def test_resume_with_nothing_to_do_writes_the_results(max_steps, tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    images = run("--trainer.max_steps", "4").model.images()
    (tmp_path / RUN / "input.pt").unlink()
    lightning_logger = logging.getLogger("lightning.pytorch")  # may not propagate to the root logger
    lightning_logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger="lightning.pytorch"):
            result = run("--trainer.max_steps", max_steps, "--ckpt_path", "last")
    finally:
        lightning_logger.removeHandler(caplog.handler)
    assert result.trainer.global_step == 4
    assert f"the checkpoint is at step 4 and max_steps is {max_steps}: no step left to run" in caplog.text
    torch.testing.assert_close(torch.load(tmp_path / RUN / "input.pt"), images)


def test_unwritable_results_folder_is_found_before_the_first_step(tmp_path):
    (tmp_path / "a_file").write_text("in the way")
    run_module = module()
    with pytest.raises(PermissionError, match="SaveImages cannot write its results into .*a_file is not a folder"):
        trainer(tmp_path, 3, SaveImages(tmp_path / "a_file" / "out")).fit(run_module)
    assert run_module.trainer.global_step == 0


# -- 7. the network stays in eval mode during every step ------------------------------------------------------------
class ModeSpy(Callback):
    """Record whether any layer of the network is in train mode at each step; optionally switch it at one."""

    def __init__(self, switch_at: int | None = None) -> None:
        self.switch_at, self.training = switch_at, []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.switch_at:
            pl_module.network.train()

    def on_before_backward(self, trainer, pl_module, loss):
        self.training.append(any(m.training for m in pl_module.network.modules()))


@pytest.mark.parametrize("switch_at", [None, 2], ids=["train_before_fit", "train_during_fit"])
def test_network_stays_in_eval_mode_during_every_step(switch_at, tmp_path):
    net = make_tiny_net()
    stats = {k: v.clone() for k, v in net.state_dict().items()}
    run_module = module(net=net)
    net.train()  # the user's call after building the module
    reference = module()
    spy = ModeSpy(switch_at)
    if switch_at is None:
        trainer(tmp_path, 4, spy).fit(run_module)
    else:
        with pytest.warns(UserWarning, match="switched to train mode during the fit"):
            trainer(tmp_path, 4, spy).fit(run_module)
    trainer(tmp_path, 4).fit(reference)
    assert spy.training == [False] * 4
    for key, value in net.state_dict().items():  # BatchNorm statistics untouched
        assert torch.equal(value, stats[key]), key
    torch.testing.assert_close(run_module.images(), reference.images())  # no Dropout
    assert net.training and all(m.training for m in net.modules())  # the user's mode is given back


def test_network_modes_are_given_back_when_the_fit_fails(tmp_path):
    class Fail(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.global_step == 1:
                raise RuntimeError("boom")

    net = make_tiny_net()
    run_module = module(net=net)
    net.train()
    with pytest.raises(RuntimeError, match="boom"):
        trainer(tmp_path, 4, Fail()).fit(run_module)
    assert all(m.training for m in net.modules())  # the user's mode, although the fit stopped at step 1


# -- first hour: no default checkpoint where the config asked for none -----------------------------------------------
def test_config_without_model_checkpoint_writes_no_checkpoint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = yaml.safe_load(CONFIG.read_text())
    config["trainer"]["callbacks"] = [c for c in config["trainer"]["callbacks"] if "ModelCheckpoint" not in c["class_path"]]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = run("--trainer.max_steps", "3", config=tmp_path / "config.yaml")
    assert result.trainer.global_step == 3 and (tmp_path / RUN / "input.pt").exists()
    assert not list((tmp_path / "results").rglob("*.ckpt"))


def test_explicit_enable_checkpointing_keeps_lightnings_default_checkpoint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = yaml.safe_load(CONFIG.read_text())
    config["trainer"]["callbacks"] = [c for c in config["trainer"]["callbacks"] if "ModelCheckpoint" not in c["class_path"]]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    run("--trainer.max_steps", "3", "--trainer.enable_checkpointing", "true", config=tmp_path / "config.yaml")
    assert [p.name for p in (tmp_path / "results").rglob("*.ckpt")] == ["epoch=0-step=3.ckpt"]


# -- 6. security: plain data names no callable but the components it is meant to build ------------------------------
def _digits_checkpoint(tmp_path) -> Path:
    net_module = InputOptimization(Problem("digits", UnitActivation(None, unit=[0, 1])))
    trainer(tmp_path, 1).fit(net_module)
    path = tmp_path / "plain.ckpt"
    trainer_ = net_module.trainer
    trainer_.save_checkpoint(path)
    return path


@pytest.mark.parametrize("field", ["objective", "priors", "param", "transforms"])
def test_checkpoint_of_plain_data_cannot_name_another_callable(field, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = _digits_checkpoint(tmp_path)
    checkpoint = torch.load(path, weights_only=True)
    hostile = {"class_path": "os.system", "init_args": {"command": "touch PWNED"}}
    checkpoint["hyper_parameters"]["problem"][field] = hostile if field in ("objective", "param") else [hostile]
    torch.save(checkpoint, path)
    with pytest.raises(ValueError, match=r"class_path 'os.system': package 'os' is not allowed"):
        InputOptimization.load_from_checkpoint(path)
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("network", ["os.getpid", "builtins.input", "pdb.set_trace", "os.system",
                                     "collections.OrderedDict"])
def test_network_name_calls_only_a_module_class_or_factory(network, monkeypatch):
    monkeypatch.setattr("sys.stdin", None)  # builtins.input must not wait for a line
    with pytest.raises(ValueError, match=rf"network '{network}': package '\w+' is not allowed"):
        InputOptimization(Problem(network, UnitActivation(None, unit=0)), image_shape=(3, 32, 32))


def not_a_network() -> dict:
    return {}


def test_network_factory_must_return_a_module():
    with pytest.raises(ValueError, match=r"network 'tests.test_reliability.not_a_network' returned a dict, not an nn.Module"):
        InputOptimization(Problem("tests.test_reliability.not_a_network", UnitActivation(None, unit=0)),
                          image_shape=(3, 32, 32))
    net = InputOptimization(Problem("tests.conftest.make_tiny_net", UnitActivation(None, unit=0)),
                            image_shape=(3, 32, 32))
    assert net.network_name == "tests.conftest.make_tiny_net"


def test_sweep_optimizer_config_builds_only_an_optimizer(tmp_path, monkeypatch):
    from inputopt.runners.sweep import _optimizer

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"class_path 'os.system': package 'os' is not allowed"):
        _optimizer({"class_path": "os.system", "init_args": {"command": "touch PWNED"}})
    assert not (tmp_path / "PWNED").exists()


# -- 7. names that become file names stay inside the results folder --------------------------------------------------
def _net_with_layer(name: str) -> nn.Module:
    """The tiny network with its last layer also reachable under ``name`` (a name ``add_module`` would refuse)."""
    net = make_tiny_net()
    net._modules[name] = nn.Identity()  # called after the network: its output is the logits

    def forward(x, _forward=net.forward):
        return net._modules[name](_forward(x))

    net.forward = forward
    return net


@pytest.mark.parametrize("layer", ["sub/dir", "ABSOLUTE/outside/ESC", "../../outside/ESC"])
def test_layer_names_give_files_inside_the_results_folder(layer, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    layer = layer.replace("ABSOLUTE", str(tmp_path).replace(".", "_"))
    out = tmp_path / "a" / "b" / "out"
    fit_module = InputOptimization(Problem(_net_with_layer(layer), UnitActivation(layer, unit=[0, 1])),
                                   image_shape=(3, 32, 32))
    saver = SaveImages(out)
    trainer(tmp_path, 1, saver, enable_checkpointing=False).fit(fit_module)
    written_files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert all(f.startswith("a/b/out/") for f in written_files), written_files
    pngs = sorted(p.name for p in (out / "images").iterdir())
    assert len(pngs) == 2 and all("/" not in p for p in pngs)
    assert all(p.is_relative_to(out) for p in saver.paths)


def test_sweep_unit_files_of_a_layer_name_with_a_slash(tmp_path):
    from inputopt.callbacks.sweep import SaveSweep
    from inputopt.runners.sweep import FeatureSweep

    sweep = FeatureSweep(Problem(_net_with_layer("sub/dir"), UnitActivation("sub/dir", unit=[0, 1])),
                         image_shape=(3, 32, 32), steps=1)
    Trainer(callbacks=[SaveSweep(tmp_path / "sweep", progress=False)], logger=False, enable_progress_bar=False,
            enable_model_summary=False).test(sweep, verbose=False)
    assert sorted(p.name for p in (tmp_path / "sweep" / "units").iterdir()) == ["sub_dir-0.pt", "sub_dir-1.pt"]
    assert (tmp_path / "sweep" / "input.pt").is_file()


# -- 8. the run lock: atomic, and held by every command on every folder it writes into -------------------------------
HOLD = ("import sys, time\nfrom inputopt.callbacks.checkpoints import RunLock\nRunLock(sys.argv[1]).__enter__()\n"
        "print('held', flush=True)\ntime.sleep(120)\n")
# a process between creating the lock file and writing its pid into it
HOLD_NO_PID = ("import fcntl, os, sys, time\nfd = os.open(os.path.join(sys.argv[1], 'run.lock'), os.O_RDWR | os.O_CREAT)\n"
               "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(120)\n")


@pytest.fixture
def holder():
    """``holder(folder)``: another process that holds ``folder``'s run lock until the test ends."""
    processes = []

    def hold(folder: Path, script: str = HOLD) -> subprocess.Popen:
        Path(folder).mkdir(parents=True, exist_ok=True)
        process = subprocess.Popen([sys.executable, "-c", script, str(folder)], stdout=subprocess.PIPE, text=True,
                                   env={**os.environ, "PYTHONPATH": str(ROOT)})
        processes.append(process)
        assert process.stdout.readline().strip() == "held"
        return process

    yield hold
    for process in processes:
        process.kill()
        process.wait()


def test_lock_whose_pid_is_not_written_yet_is_never_taken_over(tmp_path, holder):
    holder(tmp_path, HOLD_NO_PID)
    with pytest.raises(RunLockedError, match="another run \\(another process\\) is writing into"):
        RunLock(tmp_path).acquire()
    assert (tmp_path / "run.lock").read_text() == ""  # left to its holder


def test_lock_nests_in_one_process_and_goes_with_the_outermost_holder(tmp_path):
    with RunLock(tmp_path):
        inner = RunLock(tmp_path).acquire()
        inner.release()
        inner.release()  # idempotent
        assert (tmp_path / "run.lock").read_text() == f"{os.getpid()}\n"
    assert not (tmp_path / "run.lock").exists()


def test_two_sweeps_into_one_folder_the_second_is_refused(tmp_path, monkeypatch, holder):
    from inputopt.commands.sweep import run_sweep

    monkeypatch.chdir(tmp_path)
    holder(tmp_path / "sweep")
    with pytest.raises(RunLockedError, match=r"another run \(pid \d+\) is writing into"):
        run_sweep(["--config", str(ROOT / "configs" / "digits.yaml"), "--trainer.max_steps", "1",
                   "--model.problem.objective.init_args.unit", "[0, 1]"], units_per_batch=2,
                  sweep_dir=tmp_path / "sweep", progress=False)
    assert sorted(p.name for p in (tmp_path / "sweep").iterdir()) == ["run.lock"]


@pytest.mark.parametrize(("command", "config", "folder"), [
    ("attack_main", "digits_pgd.yaml", "results/digits_pgd"),
    ("examples_main", "digits_examples.yaml", "results/digits_examples"),
])
def test_dataset_runner_into_a_held_folder_is_refused(command, config, folder, tmp_path, monkeypatch, holder):
    import inputopt.commands.runners as runners

    monkeypatch.chdir(tmp_path)
    holder(tmp_path / folder)
    with pytest.raises(RunLockedError, match=r"another run \(pid \d+\) is writing into"):
        getattr(runners, command)(["--config", str(ROOT / "configs" / config), "--model.dataset.init_args.limit", "8",
                                   "--trainer.enable_progress_bar", "false"])
    assert sorted(p.name for p in (tmp_path / folder).iterdir()) == ["run.lock"]


def test_fit_into_another_run_folder_but_a_held_save_images_folder_is_refused(tmp_path, monkeypatch, holder):
    monkeypatch.chdir(tmp_path)
    holder(tmp_path / "shared")
    with pytest.raises(RunLockedError, match=r"another run \(pid \d+\) is writing into .*shared"):
        run("--trainer.max_steps", "1", "--trainer.callbacks+=SaveImages",
            "--trainer.callbacks.dirpath", str(tmp_path / "shared"))
    assert sorted(p.name for p in (tmp_path / "shared").iterdir()) == ["run.lock"]
    with pytest.raises(RunLockedError):  # from Python too: SaveImages holds its folder from setup on
        trainer(tmp_path, 1, SaveImages(tmp_path / "shared")).fit(module())


# -- 9. every runner keeps the network in eval mode, and gives the user's modes back -------------------------------
def _runner(kind: str, net: nn.Module):
    from torch.utils.data import TensorDataset

    from inputopt.attacks import PGD
    from inputopt.objectives import ChannelSum
    from inputopt.problem import Problem
    from inputopt.runners.attack import AttackEvaluation
    from inputopt.runners.examples import DatasetExamples
    from inputopt.runners.sweep import FeatureSweep

    data = TensorDataset(torch.rand(6, 3, 32, 32), torch.arange(6))
    if kind == "sweep":
        return FeatureSweep(Problem(net, UnitActivation("features.4", unit=[0, 1])), image_shape=(3, 32, 32), steps=2)
    if kind == "examples":
        return DatasetExamples(Problem(net, ChannelSum("features.4", [0, 1])), data, k=2, batch_size=3)
    return AttackEvaluation(PGD(net, eps=[0.05], alpha=0.02, steps=2), data, batch_size=3, sphere_points=0)


@pytest.mark.parametrize("kind", ["sweep", "examples", "attack"])
def test_every_runner_keeps_the_network_in_eval_mode_and_gives_the_users_modes_back(kind, tmp_path):
    net = make_tiny_net()
    runner = _runner(kind, net)
    net.train()
    net.classifier[0].eval()  # a mix of modes, given back as it was
    modes = {name: m.training for name, m in net.named_modules()}
    buffers = {k: v.clone() for k, v in net.state_dict().items()}
    seen = []
    hook = net.features[1].register_forward_hook(lambda m, i, o: seen.append(m.training))
    Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False,
            default_root_dir=tmp_path).test(runner, verbose=False)
    hook.remove()
    assert seen and not any(seen), "the network ran in train mode"
    for key, value in net.state_dict().items():  # BatchNorm statistics untouched
        assert torch.equal(value, buffers[key]), key
    assert {name: m.training for name, m in net.named_modules()} == modes


def test_runner_gives_the_users_modes_back_when_it_fails(tmp_path):
    class Fail(Callback):
        def on_test_batch_start(self, *args):
            raise KeyError("a failing run")

    net = make_tiny_net()
    runner = _runner("examples", net)
    net.train()
    with pytest.raises(KeyError):
        Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, callbacks=[Fail()],
                default_root_dir=tmp_path).test(runner, verbose=False)
    assert all(m.training for m in net.modules())


# -- 10. an interrupted run exits non-zero -------------------------------------------------------------------------
@pytest.mark.slow
def test_sigterm_to_fit_exits_143_after_its_checkpoint(tmp_path):
    import signal

    process = subprocess.Popen(
        [sys.executable, "-m", "inputopt.cli", "fit", "--config", str(ROOT / "configs" / "digits.yaml"),
         "--trainer.max_steps", "100000", "--trainer.enable_progress_bar", "false"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    try:
        for line in process.stdout:  # the summary is printed when the fit starts; then steps run
            if line.startswith("Optimized input"):
                break
        import time
        time.sleep(2)
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=120)[0]
    finally:
        process.kill()
    assert process.returncode == 143, output[-2000:]
    assert (tmp_path / "results/digits/run/checkpoints/last.ckpt").is_file()


# -- 11. a resume from a checkpoint file refuses another configuration, as --ckpt_path last does --------------------
@pytest.mark.parametrize("ckpt_path", ["last", "file"])
def test_resume_from_a_checkpoint_file_with_a_changed_prior_weight_is_refused(ckpt_path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run("--trainer.max_steps", "2")
    last = tmp_path / RUN / "checkpoints" / "last.ckpt"
    before = files(tmp_path / RUN)
    with pytest.raises(ValueError, match=r"differs from the checkpoint's in priors"):
        run("--trainer.max_steps", "4", "--ckpt_path", "last" if ckpt_path == "last" else str(last),
            "--model.problem.priors.init_args.weight", "0.5")
    after = files(tmp_path / RUN)
    assert {k: v for k, v in after.items() if "tfevents" not in k} == {  # (the logger's events files: issue 20)
        k: v for k, v in before.items() if "tfevents" not in k}


def test_resume_from_a_checkpoint_without_a_fingerprint_is_refused(tmp_path):
    last = _first_run(tmp_path)
    checkpoint = torch.load(last, weights_only=True)
    del checkpoint["inputopt_fingerprint"]
    torch.save(checkpoint, last)
    resumed = module(unit=(1, 0))
    with pytest.raises(ValueError, match="without an inputopt fingerprint"):
        trainer(tmp_path, 5).fit(resumed, ckpt_path=last)
    assert resumed.trainer.global_step == 0


# -- 12. a second run into a finished run's folder: a failure leaves it whole, and nothing of it is mixed in --------
def _nan_objective(at: int) -> list[str]:
    return ["--model.problem.objective", '{"class_path": "tests.test_reliability.NaNAt", "init_args": {"layer": null, '
            f'"unit": [3, 7], "at": {at}, "row": 1}}}}']


def test_second_run_failing_at_its_first_step_leaves_the_previous_results_whole(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run("--trainer.max_steps", "3")
    before = files(tmp_path / RUN)
    with pytest.raises(NonFiniteError):
        run("--trainer.max_steps", "3", *_nan_objective(at=0))
    after = files(tmp_path / RUN)
    for name in ("config.yaml", "checkpoints/last.ckpt", "input.pt", "grid.png", "images/output-3.png"):
        assert after[name] == before[name], name


def test_second_run_failing_later_leaves_no_images_of_the_first_beside_its_checkpoint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run("--trainer.max_steps", "3")
    with pytest.raises(NonFiniteError):
        run("--trainer.max_steps", "5", *_nan_objective(at=2))
    after = files(tmp_path / RUN)
    assert "NaNAt" in after["config.yaml"].decode()  # this run's config and last finite state (resumable) ...
    assert torch.load(tmp_path / RUN / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 2
    assert not [name for name in after if name.endswith((".png", "input.pt"))]  # ... and no other run's images


def test_second_run_with_fewer_units_leaves_only_its_own_pngs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run("--trainer.max_steps", "2")
    run("--trainer.max_steps", "2", "--model.problem.objective.init_args.unit", "[3]")
    assert sorted(p.name for p in (tmp_path / RUN / "images").iterdir()) == ["output-3.png"]


def test_sweep_record_written_by_another_sweep_meanwhile_is_compared_not_replaced(tmp_path, monkeypatch):
    from inputopt.callbacks.sweep import _open_folder

    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump({"steps": 4}))
    real, raced = Path.is_file, []

    def is_file(path: Path) -> bool:  # the record appears just after this sweep looked for it (the race)
        if path.name == "sweep.yaml" and not raced:
            raced.append(path)
            return False
        return real(path)

    monkeypatch.setattr(Path, "is_file", is_file)
    with pytest.raises(ValueError, match=r"another sweep configuration.*\n  steps: 4 -> 3"):
        _open_folder(tmp_path, {"steps": 3}, ["a"])
    assert yaml.safe_load((tmp_path / "sweep.yaml").read_text()) == {"steps": 4}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep.yaml"]


def test_learning_rate_beyond_float32_step_is_a_non_finite_error(tmp_path):
    """lr 1e38: Adam's first step size (lr / (1 - beta1)) overflows float32 inside torch, a RuntimeError; the
    run stops with NonFiniteError and keeps the starting images."""
    from functools import partial

    run_module = module(optimizer=partial(torch.optim.Adam, lr=1e38))
    start = run_module.images().detach().clone()
    with pytest.raises(NonFiniteError, match=r"step overflowed float32 at step 1"):
        trainer(tmp_path, 3).fit(run_module)
    assert torch.equal(run_module.images().detach(), start)


def test_sweep_names_a_corrupt_unit_file_early_and_regenerates_a_deleted_png(tmp_path, monkeypatch):
    from inputopt.commands.sweep import run_sweep

    monkeypatch.chdir(tmp_path)
    args = ["--config", str(ROOT / "configs" / "digits.yaml"), "--trainer.max_steps", "2",
            "--trainer.enable_progress_bar", "false", "--model.problem.objective.init_args.unit", "[1, 2]"]
    assert run_sweep(args, units_per_batch=2, sweep_dir="s", progress=False) == [[1, 2]]
    png = next(Path("s/images").glob("*1.png"))
    first = png.read_bytes()
    png.unlink()
    assert run_sweep(args, units_per_batch=2, sweep_dir="s", progress=False) == []  # nothing to compute...
    assert png.read_bytes() == first  # ...but the deleted picture is back
    unit = next(Path("s/units").glob("*2.pt"))
    torch.save(torch.zeros(3, 8, 8), unit)  # the wrong shape
    with pytest.raises(ValueError, match=rf"unit file '{unit}' holds shape \(3, 8, 8\), not a finite image of shape "
                                         r"\(1, 32, 32\); delete it"):
        run_sweep(args, units_per_batch=2, sweep_dir="s", progress=False)
    unit.write_bytes(b"PK truncated")
    with pytest.raises(ValueError, match=rf"cannot read the sweep's unit file '{unit}'"):
        run_sweep(args, units_per_batch=2, sweep_dir="s", progress=False)
    assert Path("s/grid.png").is_file() and Path("s/input.pt").is_file()  # the first run's results are kept
