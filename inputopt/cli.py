"""The ``inputopt`` command: ``inputopt fit --config configs/<name>.yaml`` (LightningCLI) and
``inputopt layers NETWORK``."""

from __future__ import annotations

import sys

from lightning.pytorch.cli import LightningCLI

from inputopt.module import InputOptimization

__all__ = ["InputOptCLI", "cli", "main"]


class InputOptCLI(LightningCLI):
    """LightningCLI for :class:`InputOptimization`, with defaults that suit input optimization."""

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {"fit": {"model", "train_dataloaders", "val_dataloaders", "datamodule"}}


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
                        help="input size (default 1 32 32 for the zoo, else 3 224 224)")
    parser.add_argument("--state_dict", default=None, help="local state_dict file")
    args = parser.parse_args(argv)
    from inputopt.networks import ZOO

    shape = args.image_shape or ((1, 32, 32) if args.network in ZOO else (3, 224, 224))
    rows = [(name or "\"\" (output)", kind, out) for name, kind, out in
            layer_table(build_network(args.network, state_dict=args.state_dict), shape)]
    widths = [max(len(row[i]) for row in rows + [("name", "type", "output shape")]) for i in range(3)]
    for row in [("name", "type", "output shape"), *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


def main() -> None:
    """Entry point of the ``inputopt`` command: ``inputopt fit ...``, ``inputopt sweep ...`` (see
    :mod:`inputopt.sweep`) or ``inputopt layers NETWORK``."""
    if sys.argv[1:2] == ["layers"]:
        layers_main(sys.argv[2:])
    elif sys.argv[1:2] == ["sweep"]:
        from inputopt.sweep import sweep_main

        sweep_main(sys.argv[2:])
    else:
        cli()


if __name__ == "__main__":
    main()
