"""The ``inputopt`` command: ``inputopt fit --config configs/<name>.yaml``, built on LightningCLI."""

from __future__ import annotations

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
    )


def main() -> None:
    """Entry point of the ``inputopt`` command."""
    cli()


if __name__ == "__main__":
    main()
