"""The results of an attack evaluation: ``results.json``, a table and example pictures."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info
from torchvision.utils import save_image

from inputopt.callbacks._checks import _check_module, _output_dir
from inputopt.networks import class_names
from inputopt.results import annotated_adversarial_grid, atomic_write, strict_json, write_text


class SaveAttackResults(Callback):
    """At the end of an :class:`~inputopt.runners.attack.AttackEvaluation`, write ``results.json`` and
    ``results.csv`` (one row per ε) and ``examples.png`` (clean | adversarial | magnified perturbation per
    ε, for the first examples; a title over each column, the predicted class under each image), print the
    table, and log the picture to TensorBoard.

    Args:
        dirpath: where to write; default the trainer's log directory (or its root directory).
        scale: integer upscaling of the picture (nearest neighbour), for small images.
        class_names: names of the network's classes for the picture; default: the names of a network given
            by name (zoo, torchvision), else the class indices.

    Example:
        >>> from lightning.pytorch import Trainer
        >>> trainer = Trainer(callbacks=[SaveAttackResults("results/digits_pgd", scale=3)])
    """

    def __init__(self, dirpath: str | os.PathLike | None = None, scale: int = 1,
                 class_names: list[str] | None = None) -> None:
        self.dirpath = dirpath
        self.scale = scale
        self.class_names = class_names
        self.paths: list[Path] = []

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        from inputopt.runners.attack import AttackEvaluation

        _check_module(pl_module, "SaveAttackResults", AttackEvaluation)
        out = _output_dir(trainer, self.dirpath)
        if not trainer.is_global_zero:
            return
        out.mkdir(parents=True, exist_ok=True)
        rows = pl_module.results
        write_text(out / "results.json", strict_json(rows) + "\n")
        table = io.StringIO()
        writer = csv.DictWriter(table, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        write_text(out / "results.csv", table.getvalue())
        self.paths = [out / "results.json", out / "results.csv"]
        examples = pl_module.examples
        if examples:
            eps = [row.get("eps") for row in rows] if len(rows) == examples["adversarial"].shape[1] else \
                [None] * examples["adversarial"].shape[1]
            grid = annotated_adversarial_grid(examples["clean"], examples["adversarial"], eps,
                                              examples["clean_predictions"], examples["predictions"],
                                              self.class_names or _class_names(pl_module.attack), self.scale)
            atomic_write(out / "examples.png", lambda handle: save_image(grid, handle, format="png"))
            self.paths.append(out / "examples.png")
            experiment = getattr(trainer.logger, "experiment", None)
            if hasattr(experiment, "add_image"):
                experiment.add_image("examples", grid, 0)
        from inputopt.networks import class_names

        name = getattr(pl_module.attack, "network_name", None)
        names = class_names(name) if name else None
        table = format_example_predictions(examples, [r["eps"] for r in rows], names) if examples and names else ""
        members = format_member_accuracy(rows, getattr(pl_module, "member_accuracy", []))
        rank_zero_info(format_results(rows) + members + table + f"\nResults in {out}")


def format_example_predictions(examples: dict, eps: list, names: list[str]) -> str:
    """The kept examples' labels and predicted classes, clean and after the attack at each ε, by class name.

    Example:
        >>> import torch
        >>> examples = {"labels": torch.tensor([0]), "clean_predictions": torch.tensor([0]),
        ...             "predictions": torch.tensor([[1, 1]])}
        >>> print(format_example_predictions(examples, [0.1, 0.2], ["cat", "dog"]))
        <BLANKLINE>
        Examples: label | clean prediction | prediction at eps 0.1, 0.2
          0: cat | cat | dog, dog
    """
    header = f"\nExamples: label | clean prediction | prediction at eps {', '.join(_cell(e) for e in eps)}"
    lines = [f"  {i}: {names[label]} | {names[clean]} | {', '.join(names[p] for p in adversarial)}"
             for i, (label, clean, adversarial) in enumerate(zip(examples["labels"].tolist(),
                                                                  examples["clean_predictions"].tolist(),
                                                                  examples["predictions"].tolist()))]
    return "\n".join([header, *lines])


def _class_names(attack) -> list[str] | None:
    """The class names of an attack's network when it was given by name, else ``None``."""
    try:
        model = attack.config()["init_args"].get("model")
    except Exception:  # an attack without a config: no names, the picture shows class indices
        return None
    return class_names(model) if isinstance(model, str) else None


def format_member_accuracy(rows: list[dict], member_accuracy: list[dict]) -> str:
    """An ensemble's (AutoAttack's) robust accuracy after each of its members, per ε, as a text table
    (empty without a per-member report).

    Example:
        >>> print(format_member_accuracy([{"eps": 0.03}], [{"clean": 1.0, "apgd-ce": 0.5, "square": 0.45}]))
        <BLANKLINE>
        robust accuracy after each member:
        eps   clean  apgd-ce  square
        0.03  1      0.5      0.45
    """
    if not member_accuracy or len(member_accuracy) != len(rows):
        return ""
    table = [{"eps": row.get("eps"), **accuracy} for row, accuracy in zip(rows, member_accuracy)]
    return "\nrobust accuracy after each member:\n" + format_results(table)


def format_results(rows: list[dict]) -> str:
    """The results of an attack evaluation as an aligned text table (one row per ε).

    Example:
        >>> print(format_results([{"eps": 0.1, "robust_accuracy": 0.5}]))
        eps  robust_accuracy
        0.1  0.5
    """
    if not rows:
        return "(no results)"
    names = list(rows[0])
    cells = [[name for name in names]] + [[_cell(row[name]) for name in names] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(names))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in cells)


def _cell(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)
