"""Do class visualizations of the shipped digits model transfer to an independently trained one?

The settings of a digits config (default: the main job, configs/digits.yaml) for several seeds, with and
without its priors (``--model.problem.priors []``); prints how many of the ten visualizations each model
classifies as their class. The config's logger, callbacks and checkpoints are switched off; any further
arguments are passed on to the command line, e.g. ``--model.optimizer.init_args.lr 0.1``.

    python examples/digits_transfer.py --seeds 0 1 2 3 4
    python examples/digits_transfer.py --config configs/digits_fourier.yaml --seeds 0 1 2 3 4
    python examples/digits_transfer.py --config configs/digits_fourier.yaml --model.problem.transforms []

docs/gallery.md collects its counts for every shipped digits config into one table.
"""

from __future__ import annotations

import argparse
import time

import torch
from lightning.pytorch.cli import SaveConfigCallback

from _quiet import quiet_lightning
from inputopt.commands.fit import cli
from inputopt.zoo import digits_cnn

QUIET = ["--trainer.logger", "false", "--trainer.callbacks", "[]", "--trainer.enable_checkpointing", "false",
         "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def visualize(config: str, seed: int, extra: list[str], prior: bool = True) -> torch.Tensor:
    """The images of ``config`` run with ``seed`` (and without its priors unless ``prior``)."""
    # run=False: no subcommand, so no "fit" in the arguments
    args = ["--config", config, "--seed_everything", str(seed), "--model.problem.seed", str(seed), *QUIET, *extra]
    if not prior:
        args += ["--model.problem.priors", "[]"]
    run = cli(args, run=False)
    # not a run to keep: no config.yaml written into the working directory
    run.trainer.callbacks = [c for c in run.trainer.callbacks if not isinstance(c, SaveConfigCallback)]
    run.trainer.fit(run.model)
    return run.model.images()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/digits.yaml", help="a digits config (ten class logits)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    args, extra = parser.parse_known_args()
    quiet_lightning()
    models = {"a": digits_cnn("a"), "b": digits_cnn("b")}
    print(f"{args.config} {' '.join(extra)}".rstrip())
    print("seed | prior: a   b  | no prior: a   b  | seconds per run")
    totals = [0, 0, 0, 0]
    for seed in args.seeds:
        counts, seconds = [], []
        for prior in (True, False):
            start = time.perf_counter()
            x = visualize(args.config, seed, extra, prior)
            seconds.append(time.perf_counter() - start)
            with torch.no_grad():
                counts += [int((m(x).argmax(1) == torch.arange(10)).sum()) for m in models.values()]
        totals = [t + c for t, c in zip(totals, counts)]
        print(f"{seed:4} | {counts[0]:6}/10 {counts[1]:2}/10 | {counts[2]:9}/10 {counts[3]:2}/10 | "
              f"{seconds[0]:.2f}, {seconds[1]:.2f}")
    n = 10 * len(args.seeds)
    print(f"all  | {totals[0]:6}/{n} {totals[1]:2}/{n} | {totals[2]:9}/{n} {totals[3]:2}/{n} |")


if __name__ == "__main__":
    main()
