"""The ``inputopt`` command: ``inputopt fit --config configs/<name>.yaml`` (LightningCLI) and
``inputopt layers NETWORK``."""

from __future__ import annotations

import sys
import warnings
import zipfile
from pathlib import Path

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback

from inputopt.callbacks import RunLock
from inputopt.module import InputOptimization, check_max_steps, check_precision

__all__ = ["InputOptCLI", "check_ckpt_file", "check_last_checkpoint", "cli", "main"]


class _SaveConfigAtFirstStep(SaveConfigCallback):
    """Write ``config.yaml`` when the first step starts, not at setup: a run that fails before its first step
    leaves the config of the run whose checkpoint and images sit next to it."""

    def setup(self, trainer, pl_module, stage: str) -> None:
        pass

    def on_train_start(self, trainer, pl_module) -> None:
        super().setup(trainer, pl_module, "fit")


class InputOptCLI(LightningCLI):
    """LightningCLI for :class:`InputOptimization`, with defaults that suit input optimization.

    A fit holds its run folder (the logger's directory) with :class:`~inputopt.callbacks.RunLock`, and a
    config without a ``ModelCheckpoint`` writes no checkpoint (Lightning would add its default one).
    """

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {"fit": {"model", "train_dataloaders", "val_dataloaders", "datamodule"}}

    def instantiate_trainer(self, **kwargs) -> Trainer:
        callbacks = self._get(self.config_init, "trainer", default={}).get("callbacks") or []
        callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
        if not any(isinstance(c, ModelCheckpoint) for c in callbacks):
            kwargs["enable_checkpointing"] = False
        return super().instantiate_trainer(**kwargs)

    def fit(self, model: InputOptimization, **kwargs) -> None:
        """``Trainer.fit`` while holding the run folder: a second run into it fails before writing anything."""
        with RunLock(self.trainer.log_dir or self.trainer.default_root_dir):
            self.trainer.fit(model, **kwargs)

    def parse_arguments(self, parser, args) -> None:
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        if subcommand:  # before Lightning reads the checkpoint's hyperparameters
            check_ckpt_file(self.config[subcommand].get("ckpt_path"))

    def before_fit(self) -> None:
        # the trainer's arguments the module would refuse, refused before the run folder is touched
        check_precision(self.trainer)
        check_max_steps(self.trainer)
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


def check_last_checkpoint(trainer: Trainer) -> None:
    """Refuse ``--ckpt_path last`` when there is no last checkpoint: Lightning only warns, and starts over."""
    from inputopt.callbacks import CheckpointOnInterrupt

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


def cli(args: list[str] | None = None, run: bool = True) -> InputOptCLI:
    """Build (and by default run) the command line; ``args`` replace ``sys.argv[1:]``.

    Example:
        >>> cli(["fit", "--config", "configs/digits.yaml", "--trainer.max_steps", "5"])  # doctest: +SKIP
    """
    return InputOptCLI(
        InputOptimization,
        args=args,
        run=run,
        trainer_defaults={"max_steps": 250, "log_every_n_steps": 1},
        auto_configure_optimizers=False,
        seed_everything_default=0,
        # configs write to fixed run directories, so that --ckpt_path last finds their checkpoints
        save_config_callback=_SaveConfigAtFirstStep,
        save_config_kwargs={"overwrite": True},
    )


def layers_main(argv: list[str]) -> None:
    """``inputopt layers NETWORK``: print the dotted names, types and output shapes of its layers."""
    import argparse

    from inputopt.layers import layer_table
    from inputopt.networks import build_network

    parser = argparse.ArgumentParser(prog="inputopt layers", description=layers_main.__doc__)
    parser.add_argument("network", help="zoo name, torchvision name or dotted import path")
    parser.add_argument("--image_shape", type=int, nargs=3, default=None, metavar=("C", "H", "W"),
                        help="input size (default: the network's own, e.g. 1 32 32 for the zoo, 3 224 224 for vgg16)")
    parser.add_argument("--state_dict", default=None, help="local state_dict file")
    args = parser.parse_args(argv)
    from inputopt.networks import default_image_shape

    shape = args.image_shape or default_image_shape(args.network) or (3, 224, 224)
    rows = [(name or "\"\" (output)", kind, out) for name, kind, out in
            layer_table(build_network(args.network, state_dict=args.state_dict), shape)]
    widths = [max(len(row[i]) for row in rows + [("name", "type", "output shape")]) for i in range(3)]
    for row in [("name", "type", "output shape"), *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


#: The subcommands that are not LightningCLI's: name -> ("module:function", one-line help). Imported only
#: when called, so that ``inputopt layers`` does not pay for the others, and no module imports this one.
SUBCOMMANDS = {
    "attack": ("inputopt.runner:attack_main", "evaluate an attack over a data set (robust accuracy, norms, ...)"),
    "examples": ("inputopt.dataset_examples:examples_main", "find the top-k natural images of every unit of a layer"),
    "sweep": ("inputopt.sweep:sweep_main", "visualize many units, chunk by chunk, resumable, on any devices"),
    "layers": ("inputopt.cli:layers_main", "list a network's layers: dotted names, types, output shapes"),
}

USAGE = """usage: inputopt <command> [options]

commands:
{commands}
Run `inputopt <command> --help` for the options of a command.
"""


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``inputopt`` command: ``inputopt fit ...`` (LightningCLI), or one of :data:`SUBCOMMANDS`."""
    import importlib

    argv = sys.argv[1:] if argv is None else list(argv)
    if "" not in sys.path:  # as `python -m` does: the user's own objectives import from the current folder
        sys.path.insert(0, "")
    if not argv or argv[0] in ("-h", "--help"):
        rows = {"fit": "optimize the input of a network: feature visualization or an attack on a few images"}
        rows.update({name: help_ for name, (_, help_) in SUBCOMMANDS.items()})
        width = max(map(len, rows)) + 2
        commands = "".join(f"  {name:<{width}}{help_}\n" for name, help_ in rows.items())
        print(USAGE.format(commands=commands), end="")
        return
    with warnings.catch_warnings():
        # the command line, passed on as `args`: not the mix of two command lines that Lightning warns about
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
        if argv[0] in SUBCOMMANDS:
            module, function = SUBCOMMANDS[argv[0]][0].split(":")
            getattr(importlib.import_module(module), function)(argv[1:])
        else:
            cli(argv)


if __name__ == "__main__":
    main()
