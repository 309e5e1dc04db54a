"""``inputopt sweep``: the arguments of ``inputopt fit``, plus ``--units_per_batch`` and ``--sweep_dir``, run as a
:class:`~inputopt.runners.sweep.FeatureSweep` with its :class:`~inputopt.callbacks.sweep.SaveSweep`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lightning.pytorch.cli import LightningCLI

from inputopt.callbacks.sweep import SaveSweep
from inputopt.commands.common import lightning_cli
from inputopt.module import InputOptimization
from inputopt.runners.sweep import FeatureSweep

__all__ = ["SweepCLI", "run_sweep", "sweep_cli", "sweep_main"]


class SweepCLI(LightningCLI):
    """``inputopt sweep``: the arguments of ``inputopt fit`` (config and overrides), plus ``--units_per_batch``
    and ``--sweep_dir``; builds a :class:`~inputopt.runners.sweep.FeatureSweep` and its :class:`~inputopt.callbacks.sweep.SaveSweep` (``run=False``: call
    ``cli.trainer.test(cli.model)``).

    From the config: ``model.problem`` (the :class:`~inputopt.problem.Problem`: network, objective with units,
    priors, parameterization, transforms, seed), ``model.image_shape`` and ``model.optimizer`` as for a fit
    (``init`` is refused: a sweep starts from seeded noise; ``batch_size``, ``freeze_done`` and
    ``log_per_image`` do not apply), ``trainer.max_steps`` the steps per
    chunk, ``SaveImages``' ``display``/``nrow``/``scale`` how the PNGs and the grid look, and any Trainer
    setting (devices, strategy, precision). The sweep logs nothing and checkpoints nothing: the per-unit
    files are its checkpoints, so the config's logger and its fit callbacks (``inputopt.callbacks``,
    ``ModelCheckpoint``) are left out, but for :class:`~inputopt.callbacks.visualization_checks.VisualizationChecks`,
    which checks the sweep's units and writes ``checks.md`` beside them. Built by :func:`sweep_cli`.
    """

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument("--units_per_batch", type=int, default=64, help="units optimized together (default 64)")
        parser.add_argument("--sweep_dir", type=str, default="results/sweep",
                            help="the sweep folder: per-unit files, grid, input.pt (default results/sweep)")

    def instantiate_classes(self) -> None:
        from lightning.pytorch.callbacks import ModelCheckpoint

        from inputopt.callbacks.images import SaveImages
        from inputopt.callbacks.visualization_checks import VisualizationChecks

        # components (the problem and its parts, callbacks) are built; InputOptimization itself is not
        self.config_init = self.parser.instantiate(self.config, instantiate_groups=False)
        model, trainer = self.config_init["model"], self.config_init["trainer"]
        if model["init"] is not None:
            raise ValueError("a sweep starts every unit from seeded noise; model.init does not apply")
        steps = self.config["trainer"]["max_steps"]
        if steps is None or steps < 1:  # 0 would save the starting noise as results
            raise ValueError(f"--trainer.max_steps must be an int >= 1, the optimization steps per chunk, got "
                             f"{steps!r}")
        optimizer = self.config["model"]["optimizer"]
        self.model = FeatureSweep(model["problem"], model["image_shape"],
                                  optimizer=None if optimizer is None else optimizer.as_dict(), steps=steps,
                                  units_per_batch=self.config["units_per_batch"])
        callbacks = trainer["callbacks"] or []
        callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
        saver = next((c for c in callbacks if isinstance(c, SaveImages)), SaveImages())
        kept = [c for c in callbacks if isinstance(c, VisualizationChecks) or (
            not isinstance(c, ModelCheckpoint) and not type(c).__module__.startswith("inputopt.callbacks."))]
        progress = self.config["trainer"]["enable_progress_bar"] is not False
        self.saver = SaveSweep(self.config["sweep_dir"], saver.display, saver.nrow, saver.scale, progress=progress)
        self.trainer = self.instantiate_trainer(callbacks=[*kept, self.saver], logger=False, enable_progress_bar=False,
                                                enable_model_summary=False, enable_checkpointing=False)


def sweep_cli(args: Sequence[str] | None = None) -> SweepCLI:
    """The :class:`SweepCLI` of ``args`` (``inputopt fit`` arguments, with ``--units_per_batch`` and
    ``--sweep_dir``; a leading ``fit`` is dropped), with the defaults of ``inputopt fit``.

    Example:
        >>> sweep_cli(["--config", "configs/digits.yaml", "--sweep_dir", "results/sweep"])  # doctest: +SKIP
    """
    return lightning_cli(
        InputOptimization, None if args is None else [a for a in args if a != "fit"], cli_class=SweepCLI,
        fit_defaults=True, save_config_callback=None, prog="inputopt sweep",
        description="Visualize many units, chunk by chunk, resumable, on any number of devices: the arguments of "
                    "`inputopt fit`, plus --units_per_batch and --sweep_dir.")


def run_sweep(args: Sequence[str], units_per_batch: int = 64, sweep_dir: str | Path = "results/sweep",
              progress: bool = True) -> list[list[int]]:
    """``inputopt sweep`` from Python: returns the chunks of units this process computed.

    Args:
        args: ``inputopt fit`` arguments, e.g. ``["--config", "configs/digits.yaml"]``.
        units_per_batch: units optimized together in one batch.
        sweep_dir: the sweep folder.
        progress: show the progress bar of units.

    Example:
        >>> run_sweep(["--config", "configs/digits.yaml", "--model.problem.objective.init_args.unit", "all"],
        ...           units_per_batch=4)  # doctest: +SKIP
    """
    argv = [*args, "--units_per_batch", str(units_per_batch), "--sweep_dir", str(sweep_dir)]
    if not progress:
        argv += ["--trainer.enable_progress_bar", "false"]
    cli = sweep_cli(argv)
    cli.trainer.test(cli.model, verbose=False)
    return cli.saver.chunks


def sweep_main(argv: Sequence[str]) -> None:
    """``inputopt sweep [--units_per_batch N] [--sweep_dir DIR] <inputopt fit arguments>``."""
    cli = sweep_cli(list(argv))
    cli.trainer.test(cli.model, verbose=False)
