"""The command lines of the dataset runners: ``inputopt attack``, ``inputopt examples`` and ``inputopt invert``."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

from inputopt.runners.attack import AttackEvaluation
from inputopt.runners.base import DatasetRunner
from inputopt.runners.examples import DatasetExamples
from inputopt.runners.inversion import FeatureInversion

__all__ = ["attack_main", "examples_main", "invert_main", "runner_command"]


def runner_command(runner: type[DatasetRunner], argv: Sequence[str], prog: str, description: str) -> DatasetRunner:
    """The command line of a dataset runner: parse its config (``model:`` the runner's arguments,
    ``trainer:`` devices, precision, logger, callbacks, as for ``inputopt fit``) and run ``trainer.test``, holding
    every folder it writes into (:func:`~inputopt.callbacks.checkpoints.hold_run_folders`).

    Example:
        >>> runner_command(AttackEvaluation, ["--config", "configs/digits_pgd.yaml"], "inputopt attack", "")  # doctest: +SKIP
    """
    from inputopt.commands.common import lightning_cli
    from inputopt.commands.fit import default_root_dir

    cli = lightning_cli(runner, argv, prog=prog, description=description,
                        trainer_defaults={"logger": False, "enable_model_summary": False,
                                          # never the current folder: results/<command>/run
                                          "default_root_dir": default_root_dir(prog.split()[-1])})
    from lightning.pytorch.utilities import rank_zero_only

    from inputopt.callbacks.checkpoints import hold_run_folders

    # the folders its callbacks write into, held by the first process only (the others it launches share them)
    with hold_run_folders(cli.trainer, log_dir=cli.trainer.logger is not None) if rank_zero_only.rank == 0 else contextlib.nullcontext():
        cli.trainer.test(cli.model, verbose=False)
    return cli.model


def attack_main(argv: Sequence[str]) -> AttackEvaluation:
    """``inputopt attack --config configs/digits_pgd.yaml``: evaluate an attack over a data set.

    Example:
        >>> attack_main(["--config", "configs/digits_pgd.yaml", "--model.dataset.init_args.limit", "64"])  # doctest: +SKIP
    """
    return runner_command(AttackEvaluation, argv, "inputopt attack", "Evaluate an attack over a data set: clean and "
                        "robust accuracy per eps, perturbation norms, the random-sphere check.")


def examples_main(argv: Sequence[str]) -> DatasetExamples:
    """``inputopt examples --config ...``: parse a :class:`DatasetExamples` config and run ``trainer.test``.

    The config has ``model:`` (``problem:``, whose ``network`` and ``objective``, a ``ChannelSum`` or another
    :class:`~inputopt.objectives.UnitsObjective`, name the network, the layer and its units; ``dataset``, ``k``,
    ``crop_size``, ...) and ``trainer:`` (devices, logger, callbacks such as :class:`SaveDatasetExamples`).

    Example:
        >>> examples_main(["--config", "configs/digits_examples.yaml"])  # doctest: +SKIP
    """
    return runner_command(DatasetExamples, argv, "inputopt examples", "Find the top-k natural images of every unit "
                        "of a layer over a data set (dataset examples).")


def invert_main(argv: Sequence[str]) -> FeatureInversion:
    """``inputopt invert --config ...``: parse a :class:`FeatureInversion` config and run ``trainer.test``.

    The config has ``model:`` (``problem:`` with the ``network``, a ``FeatureMatch`` objective naming the layer
    and the metric, the ``priors``, ``param`` and ``seed``; ``dataset``, ``steps``, ...) and ``trainer:`` (devices,
    logger, callbacks such as :class:`~inputopt.callbacks.inversion.SaveInversions`).

    Example:
        >>> invert_main(["--config", "configs/digits_inversion.yaml"])  # doctest: +SKIP
    """
    return runner_command(FeatureInversion, argv, "inputopt invert", "Invert a layer's activations for every image "
                          "of a data set (feature inversion, one inversion per image).")
