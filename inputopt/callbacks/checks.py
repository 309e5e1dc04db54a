"""The evaluation checks of :mod:`inputopt.attacks.checks` as a callback of :class:`~inputopt.runners.attack.AttackEvaluation`."""

from __future__ import annotations

import json
import os
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from inputopt.attacks.checks import checks_table, evaluation_checks
from inputopt.callbacks._checks import _output_dir
from inputopt.results import write_text

__all__ = ["EvaluationChecks"]


class EvaluationChecks(Callback):
    """After an attack evaluation, run the checks of Carlini et al. (2019) on its attack and first samples.

    Writes ``checks.md`` (the attack, its norm and ε, the number of samples n, and the pass/fail table) and
    ``checks.json`` (the numbers), and prints them.
    From the command line: ``inputopt attack --config configs/digits_autoattack.yaml
    --trainer.callbacks+=inputopt.callbacks.checks.EvaluationChecks``.

    Args:
        num_samples: how many samples of the data set the checks use (the first ones).
        dirpath: where to write; default beside ``results.json`` (the folder of the run's
            :class:`~inputopt.callbacks.attack.SaveAttackResults`), else the trainer's log directory.
        **options: keyword arguments of :func:`~inputopt.attacks.checks.evaluation_checks` (``queries``,
            ``restarts``, ``tolerance``, ...).

    Example:
        >>> from lightning.pytorch import Trainer
        >>> from inputopt.attacks import APGD
        >>> from inputopt.data import Digits
        >>> from inputopt.runners.attack import AttackEvaluation
        >>> import tempfile
        >>> runner = AttackEvaluation(APGD("digits", eps=0.1, steps=5), Digits(limit=8), sphere_points=0)
        >>> checks = EvaluationChecks(num_samples=8, dirpath=tempfile.mkdtemp(), eps_factors=(1, 2), restarts=2,
        ...                           queries=10, minimal_steps=5, sphere_points=5, verbose=False)
        >>> _ = Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False,
        ...             callbacks=[checks]).test(runner, verbose=False)
        >>> [r.name for r in checks.results][:2]
        ['unbounded', 'eps curve']
    """

    def __init__(self, num_samples: int = 200, dirpath: str | os.PathLike | None = None, verbose: bool = True,
                 **options: Any) -> None:
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be an int >= 1, got {num_samples!r}")
        self.num_samples = num_samples
        self.dirpath = dirpath
        self.verbose = verbose
        self.options = options
        self.results: list = []

    def directory(self, trainer: Trainer):
        """Where it writes: ``dirpath``, else the folder of the run's ``SaveAttackResults`` (beside
        ``results.json``), else the trainer's log directory (or its root directory). Every process calls it:
        ``trainer.log_dir`` is a collective under DDP."""
        from inputopt.callbacks.attack import SaveAttackResults

        saver = next((c for c in trainer.callbacks if isinstance(c, SaveAttackResults)), None)
        return _output_dir(trainer, self.dirpath or (saver.dirpath if saver is not None else None))

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        out = self.directory(trainer)
        if trainer.global_rank != 0:
            return
        data = pl_module.dataset
        count = min(self.num_samples, len(data))
        samples = [data[i] for i in range(count)]
        with torch.inference_mode(False), torch.enable_grad():  # Lightning ends a test under inference mode
            images = torch.stack([torch.as_tensor(s[0]).clone() for s in samples]).float().to(pl_module.device)
            labels = torch.tensor([int(s[1]) for s in samples], device=pl_module.device)
            self.results = evaluation_checks(pl_module.attack, images, labels, keys=list(range(count)), **self.options)
        attack = pl_module.attack
        eps = ", ".join(f"{e:g}" for e in getattr(attack, "epsilons", []) or []) or "none (minimal norm)"
        header = (f"Evaluation checks of {type(attack).__name__} ({getattr(attack, 'norm', '?')}, eps {eps}) on the "
                  f"first n = {count} samples of the data set")
        table = header + "\n\n" + checks_table(self.results)
        out.mkdir(parents=True, exist_ok=True)
        write_text(out / "checks.md", table + "\n")
        write_text(out / "checks.json", json.dumps(
            {"attack": type(attack).__name__, "norm": getattr(attack, "norm", None),
             "eps": list(getattr(attack, "epsilons", []) or []), "n": count,
             "checks": [{"name": r.name, "passed": r.passed, "detail": r.detail, "values": r.values}
                        for r in self.results]}, indent=2, default=float))
        if self.verbose:
            print(table)
