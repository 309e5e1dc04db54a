"""``inputopt universal``: one input for a whole data set (a universal perturbation, an adversarial patch),
``Trainer.fit`` over the data through Lightning's ``LightningCLI``, with the guarantees of ``inputopt fit``."""

from __future__ import annotations

from collections.abc import Sequence

from lightning.pytorch.utilities import rank_zero_info

from inputopt.callbacks.checkpoints import RunLock
from inputopt.commands.fit import InputOptCLI, _SaveConfigAtFirstStep, default_root_dir
from inputopt.runners.shared import SharedInputOptimization

__all__ = ["UniversalCLI", "universal_main"]


class UniversalCLI(InputOptCLI):
    """``inputopt fit``'s command line (run-folder lock, checks before the run folder is touched, config
    written at the first step) around :class:`SharedInputOptimization`. The held-out fooling rate is measured
    before the first step (a new run), every ``val_check_interval`` steps, and after the last step."""

    def fit(self, model: SharedInputOptimization, **kwargs) -> None:
        with RunLock(self.trainer.log_dir or self.trainer.default_root_dir):
            if model.val_dataset is not None and kwargs.get("ckpt_path") is None:  # the curve's start, step 0
                self.trainer.validate(model, verbose=False)
            self.trainer.fit(model, **kwargs)
            if model.val_dataset is not None and (not model.history or model.history[-1][0] != model.global_step):
                self.trainer.validate(model, verbose=False)
        if model.history:
            rank_zero_info("held-out fooling rate: " + ", ".join(f"step {s}: {r:.3f}" for s, r in model.history))


def universal_main(argv: Sequence[str]) -> UniversalCLI:
    """``inputopt universal --config configs/digits_universal.yaml``: fit one shared input over a data set.

    Example:
        >>> universal_main(["--config", "configs/digits_universal.yaml", "--trainer.max_steps", "20"])  # doctest: +SKIP
    """
    from inputopt.commands.common import lightning_cli

    return lightning_cli(
        SharedInputOptimization, ["fit", *argv], cli_class=UniversalCLI, run=True,
        trainer_defaults={"default_root_dir": default_root_dir("universal"), "max_steps": 200, "log_every_n_steps": 1, "check_val_every_n_epoch": None,
                          "val_check_interval": 50, "num_sanity_val_steps": 0},
        auto_configure_optimizers=False,
        save_config_callback=_SaveConfigAtFirstStep,
        parser_kwargs={"fit": {"prog": "inputopt universal", "description": "Optimize one input for a whole data "
                                                                            "set: a universal perturbation or an "
                                                                            "adversarial patch."}},
    )
