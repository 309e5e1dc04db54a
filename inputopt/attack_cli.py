"""``inputopt attack --config configs/digits_pgd.yaml``: evaluate an attack over a data set."""

from __future__ import annotations

from collections.abc import Sequence

from lightning.pytorch.cli import LightningCLI

from inputopt._config import import_components
from inputopt.runner import AttackEvaluation

__all__ = ["attack_main"]


def attack_main(argv: Sequence[str]) -> AttackEvaluation:
    """Parse the config of an :class:`~inputopt.runner.AttackEvaluation` and run ``trainer.test``.

    The config has ``model:`` (the runner: ``attack``, ``dataset``, ``batch_size``, the sphere check) and
    ``trainer:`` (devices, precision, logger, callbacks), as for ``inputopt fit``.

    Example:
        >>> attack_main(["--config", "configs/digits_pgd.yaml", "--model.dataset.init_args.limit", "64"])  # doctest: +SKIP
    """
    import_components()  # short class names in the config
    cli = LightningCLI(
        AttackEvaluation,
        args=list(argv),
        run=False,
        trainer_defaults={"logger": False, "enable_model_summary": False},
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"prog": "inputopt attack", "description": "Evaluate an attack over a data set: clean and "
                       "robust accuracy per eps, perturbation norms, the random-sphere check."},
    )
    cli.trainer.test(cli.model, verbose=False)
    return cli.model
