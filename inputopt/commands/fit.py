"""``inputopt fit``: Lightning's ``LightningCLI`` around :class:`~inputopt.module.InputOptimization`, with the
checks that refuse a bad run before it touches its run folder."""

from __future__ import annotations

import os
import sys
import zipfile
from types import SimpleNamespace
from pathlib import Path

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback

from inputopt.callbacks.checkpoints import hold_run_folders
from inputopt.commands.common import lightning_cli
from inputopt.engine import check_precision
from inputopt.module import InputOptimization, check_max_steps, check_one_process

__all__ = ["InputOptCLI", "check_ckpt_file", "default_root_dir", "check_init_argument", "check_last_checkpoint", "cli", "fit_main"]


class _SaveConfigAtFirstStep(SaveConfigCallback):
    """Write ``config.yaml`` once the first step of this fit has ended finite, not at setup: a run that fails
    before (a refused setting, a non-finite first step) leaves the config of the run whose checkpoint and images
    sit next to it. From then on the folder is this run's (``SaveImages`` removes the previous run's images
    at the same moment)."""

    def setup(self, trainer, pl_module, stage: str) -> None:
        pass

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self.already_saved:
            super().setup(trainer, pl_module, "fit")


class InputOptCLI(LightningCLI):
    """LightningCLI for :class:`InputOptimization`, with defaults that suit input optimization.

    A fit holds its run folder (the logger's directory) and every folder its callbacks write into with
    :class:`~inputopt.callbacks.checkpoints.RunLock` (:func:`~inputopt.callbacks.checkpoints.hold_run_folders`), and a
    config without a ``ModelCheckpoint`` writes no checkpoint (Lightning would add its default one).
    """

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {"fit": {"model", "train_dataloaders", "val_dataloaders", "datamodule"}}

    def instantiate_trainer(self, **kwargs) -> Trainer:
        trainer = self._get(self.config_init, "trainer", default={})
        # before Lightning's own check of max_steps, which names no valid value for a fit
        check_max_steps(SimpleNamespace(max_steps=trainer.get("max_steps")))
        callbacks = trainer.get("callbacks") or []
        callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
        # Lightning's default ModelCheckpoint only where asked for (--trainer.enable_checkpointing true)
        if trainer.get("enable_checkpointing") is None and not any(isinstance(c, ModelCheckpoint) for c in callbacks):
            kwargs["enable_checkpointing"] = False
        return super().instantiate_trainer(**kwargs)

    def fit(self, model: InputOptimization, **kwargs) -> None:
        """``Trainer.fit`` while holding the run folder: a second run into it fails before writing anything."""
        with hold_run_folders(self.trainer):  # the log folder, and SaveImages' own folder when it has one
            self.trainer.fit(model, **kwargs)

    def _parse_ckpt_path(self) -> None:
        """Keep the configuration the command line gives. Lightning would replace the model's configuration with
        the hyperparameters of a ``--ckpt_path`` *file* (not of ``last``), so that a changed setting was silently
        dropped; kept, it meets the checkpoint's fingerprint, which refuses any difference, as for ``last``."""

    def parse_arguments(self, parser, args) -> None:
        check_init_argument(sys.argv[1:] if args is None else args)
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        if subcommand:  # before Lightning reads the checkpoint's hyperparameters
            check_ckpt_file(self.config[subcommand].get("ckpt_path"))

    def before_fit(self) -> None:
        # the trainer's arguments the module would refuse, refused before the run folder is touched
        check_precision(self.trainer)
        check_max_steps(self.trainer)
        if isinstance(self.model, InputOptimization):  # before Lightning launches the other processes
            check_one_process(self.trainer)
        if self.config[self.subcommand].get("ckpt_path") == "last":
            check_last_checkpoint(self.trainer)


#: ``--ckpt_path`` values that are not files: Lightning resolves them.
SPECIAL_CKPT_PATHS = ("last", "best", "hpc", "registry")


def check_ckpt_file(ckpt_path: str | None) -> None:
    """Refuse a ``--ckpt_path`` file that does not exist or is not a checkpoint, naming it."""
    if ckpt_path is None or ckpt_path in SPECIAL_CKPT_PATHS or str(ckpt_path).startswith("registry:"):
        return
    path = Path(ckpt_path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"--ckpt_path {str(path)!r}: no such checkpoint file (or 'last' for the last one)")
    if not zipfile.is_zipfile(path):  # what torch.save writes; a truncated file fails this too
        raise ValueError(f"--ckpt_path {str(path)!r} is not a checkpoint (corrupt, truncated or another kind of "
                         f"file)")


def check_init_argument(args) -> None:
    """Refuse ``--model.init FILE`` when the file is empty, naming the option (an empty file is no image, and a
    common slip: a download or a save that failed).

    Example:
        >>> check_init_argument(["--model.init", "no_such_file.png"])  # a missing file is the module's to name
    """
    args = [str(a) for a in args] if isinstance(args, (list, tuple)) else []
    for i, arg in enumerate(args):
        value = args[i + 1] if arg == "--model.init" and i + 1 < len(args) else \
            arg.split("=", 1)[1] if arg.startswith("--model.init=") else None
        if value and Path(value).expanduser().is_file() and Path(value).expanduser().stat().st_size == 0:
            raise ValueError(f"--model.init {value!r} is an empty file: give an image file or a .pt file of images "
                             f"(or leave --model.init out to start from noise)")


def check_last_checkpoint(trainer: Trainer) -> None:
    """Refuse ``--ckpt_path last`` when there is no last checkpoint: Lightning only warns, and starts over."""
    from inputopt.callbacks.checkpoints import CheckpointOnInterrupt

    found, places = [], []
    for callback in trainer.callbacks:
        if isinstance(callback, ModelCheckpoint):
            found += callback._find_last_checkpoints(trainer)  # how Lightning itself resolves "last"
            places.append(str(callback.dirpath or Path(trainer.log_dir or trainer.default_root_dir) / "checkpoints"))
        elif isinstance(callback, CheckpointOnInterrupt):
            path = callback.path(trainer)
            found += [str(path)] if path.is_file() else []
            places.append(str(path.parent))
    if not found:
        where = ", ".join(dict.fromkeys(places)) or "nowhere: the run has no ModelCheckpoint(save_last=True)"
        raise FileNotFoundError(f"--ckpt_path last: there is no last checkpoint to resume from (looked in {where}); "
                                f"leave --ckpt_path out to start a new run, or give a checkpoint file")
    latest = max(found, key=os.path.getmtime)  # the one Lightning resumes from
    if not zipfile.is_zipfile(latest):  # truncated (a full disk) or damaged
        intact = sorted((p for place in dict.fromkeys(places) for p in Path(place).glob("*.ckpt")
                         if zipfile.is_zipfile(p)), key=os.path.getmtime, reverse=True)
        use = (f"the intact checkpoint {intact[0]} (step {_checkpoint_step(intact[0])}) is the latest to resume "
               f"from: --ckpt_path {intact[0]}" if intact else "there is no intact checkpoint beside it")
        raise ValueError(f"--ckpt_path last: {latest} is damaged (truncated or not a checkpoint); {use}, or leave "
                         f"--ckpt_path out to start a new run")


def _checkpoint_step(path: Path) -> str:
    import torch

    try:
        return str(torch.load(path, map_location="cpu", weights_only=True).get("global_step", "?"))
    except Exception:  # noqa: BLE001 - only for the message
        return "?"


def cli(args: list[str] | None = None, run: bool = True) -> InputOptCLI:
    """Build (and by default run) the command line; ``args`` replace ``sys.argv[1:]``.

    Example:
        >>> cli(["fit", "--config", "configs/digits.yaml", "--trainer.max_steps", "5"])  # doctest: +SKIP
    """
    # configs write to fixed run directories (config.yaml overwritten), so that --ckpt_path last finds their
    # checkpoints
    from inputopt.commands.common import FIT_TRAINER_DEFAULTS

    # without a logger (--trainer.logger false, --trainer.fast_dev_run true) the outputs go to DEFAULT_ROOT_DIR,
    # never the current folder
    return lightning_cli(InputOptimization, args, cli_class=InputOptCLI, run=run, fit_defaults=True,
                         save_config_callback=_SaveConfigAtFirstStep,
                         trainer_defaults={**FIT_TRAINER_DEFAULTS, "default_root_dir": default_root_dir("fit")})


def default_root_dir(command: str) -> str:
    """The folder a command writes into when its config names none (no logger, a callback without ``dirpath``):
    ``results/<command>/run``, never the current folder, where a user's own ``images/`` or ``grid.png`` may be.

    Example:
        >>> default_root_dir("attack")
        'results/attack/run'
    """
    return f"results/{command}/run"


def fit_main(argv: list[str]) -> None:
    """``inputopt fit ...``: run :func:`cli` on ``argv``, the arguments after ``fit``."""
    cli(["fit", *argv])
