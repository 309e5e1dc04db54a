"""``inputopt sweep``: many units, chunk after chunk, each chunk written as it finishes, resumable."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from inputopt.objectives.base import UnitsObjective
from inputopt.results import save_grid, save_images

__all__ = ["run_sweep", "sweep_main"]


def _is_rank_zero() -> bool:
    # Lightning's `ddp` launcher starts the other processes with LOCAL_RANK >= 1 (and sets 0 in the first).
    return int(os.environ.get("LOCAL_RANK", "0")) == 0 and int(os.environ.get("NODE_RANK", "0")) == 0


def run_sweep(args: Sequence[str], units_per_batch: int = 64, sweep_dir: str | os.PathLike = "results/sweep",
              progress: bool = True) -> list[list[int]]:
    """Optimize every unit of the objective in chunks of ``units_per_batch``; returns the chunks run.

    ``args`` are the arguments of ``inputopt fit`` (config and overrides). The objective must target
    units (``unit``/``channel``: a list or ``"all"``). Each chunk is one ``Trainer.fit`` of a module
    whose objective holds that chunk's units; when it finishes, rank 0 writes
    ``<sweep_dir>/units/<layer>-<unit>.pt`` and ``<sweep_dir>/images/<layer>-<unit>.png`` for each of
    its units. Units whose ``.pt`` file exists are skipped, so re-running the same command after an
    interruption recomputes nothing that was written. At the end, ``grid.png`` and ``input.pt`` hold
    every unit in order. A unit's image does not depend on the chunk it ran in (its starting noise
    depends only on ``(seed, unit)``, and rows do not interact), so chunking changes nothing but speed.

    Args:
        args: ``inputopt fit`` arguments, e.g. ``["--config", "configs/digits.yaml"]``.
        units_per_batch: units optimized together in one batch.
        sweep_dir: where the per-unit results, the grid and ``input.pt`` go.
        progress: show a progress bar of units done out of units total (rank 0).

    Example:
        >>> run_sweep(["--config", "configs/digits.yaml", "--model.objective.init_args.unit", "all"],
        ...           units_per_batch=4)  # doctest: +SKIP
    """
    from tqdm.auto import tqdm

    from inputopt.callbacks import SaveImages
    from inputopt.cli import cli

    if units_per_batch < 1:
        raise ValueError(f"units_per_batch must be >= 1, got {units_per_batch}")
    args = [a for a in args if a != "fit"]
    whole = cli(list(args), run=False)  # resolves units="all" with a one-image probe
    objective = whole.model.objective
    if not isinstance(objective, UnitsObjective):
        raise ValueError(f"inputopt sweep needs an objective with units (UnitActivation, ChannelSum, ...), "
                         f"got {type(objective).__name__}")
    units, names = objective.units, whole.model.image_names()
    if len(units) != len(names):  # a single unit shared by several images
        raise ValueError(f"inputopt sweep needs one image per unit; the objective targets units {units}")
    saver = next((c for c in whole.trainer.callbacks if isinstance(c, SaveImages)), SaveImages())
    out = Path(sweep_dir)
    todo = [(u, n) for u, n in zip(units, names) if not (out / "units" / f"{n}.pt").is_file()]
    chunks = [todo[i:i + units_per_batch] for i in range(0, len(todo), units_per_batch)]
    del whole
    bar = tqdm(total=len(units), initial=len(units) - len(todo), unit="unit", desc="units",
               disable=not (progress and _is_rank_zero()))
    for chunk in chunks:
        chunk_units = [u for u, _ in chunk]
        run = cli([*args, f"--model.objective.init_args.{objective.units_argument}", json.dumps(chunk_units)],
                  run=False)
        # the sweep writes every unit itself; a SaveImages of the config would write each chunk's grid
        run.trainer.callbacks[:] = [c for c in run.trainer.callbacks if not isinstance(c, SaveImages)]
        run.trainer.fit(run.model)
        if run.trainer.is_global_zero:
            x = run.model.images().cpu()
            save_images(x, out / "images", [n for _, n in chunk], saver.display, saver.scale)
            (out / "units").mkdir(parents=True, exist_ok=True)
            for image, (_, name) in zip(x, chunk):
                partial = out / "units" / f"{name}.pt.partial"
                torch.save(image.clone(), partial)
                partial.replace(out / "units" / f"{name}.pt")  # a unit's file exists only once complete
        bar.update(len(chunk))
    bar.close()
    if _is_rank_zero():
        x = torch.stack([torch.load(out / "units" / f"{n}.pt", weights_only=True) for n in names])
        torch.save(x, out / "input.pt")
        grid = save_grid(x, out / "grid.png", saver.display, saver.nrow, saver.scale)
        print(f"inputopt sweep: {len(units)} units ({len(todo)} computed now, {len(units) - len(todo)} already "
              f"done) in {grid}; one per unit in {out / 'images'}")
    return [[u for u, _ in chunk] for chunk in chunks]


def sweep_main(argv: Sequence[str]) -> None:
    """``inputopt sweep [--units_per_batch N] [--sweep_dir DIR] <inputopt fit arguments>``."""
    parser = argparse.ArgumentParser(prog="inputopt sweep", description=sweep_main.__doc__)
    parser.add_argument("--units_per_batch", type=int, default=64, help="units optimized together (default 64)")
    parser.add_argument("--sweep_dir", default="results/sweep", help="where results go (default results/sweep)")
    known, rest = parser.parse_known_args(list(argv))
    run_sweep(rest, known.units_per_batch, known.sweep_dir)
