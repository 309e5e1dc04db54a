"""A universal perturbation on the digits model: inputopt's SharedInputOptimization under Trainer.fit against the
Adversarial Robustness Toolbox's (ART) ``UniversalPerturbation``, for the time to reach a held-out fooling rate.

Run from the repository root (ART is not an inputopt dependency)::

    pip install adversarial-robustness-toolbox
    python benchmarks/bench_art_universal.py --train 512 --targets 0.5 0.8

Both sides: the shipped digits model, the first ``--train`` training digits, ``x' = clamp(x + δ, 0, 1)``,
``‖δ‖∞ ≤ 0.2``, untargeted against each clean prediction. The held-out fooling rate (the fraction of the 450
``Digits("test")`` digits whose prediction changes) is measured by this script, the same way for both, and its
time is left out of both clocks.

*inputopt*: ``Trainer.fit(SharedInputOptimization(...))`` as in ``configs/digits_universal.yaml`` (``Margin``,
sign-gradient steps of 0.005, batches of 64, projection on the ε-ball), validated every ``--every`` steps; the
clock (module construction included) runs until the end of the training step before the first validation at
or above each target, validations subtracted. It stops at the highest target or ``--steps``.

*ART*: ``UniversalPerturbation(PyTorchClassifier(...), attacker=..., eps=0.2, norm=inf)``, the algorithm
of Moosavi-Dezfooli et al. 2017: passes over the training digits one at a time; for each digit that
``δ`` does not fool yet, the inner attack (DeepFool by default, minimal L2 step; or FGSM) is run on ``x + δ``,
and if it changes the class, ``δ`` becomes the new adversarial minus ``x``, projected on the ε-ball. ``delta=0``,
so it runs ``--passes`` passes (unless every training digit is fooled), or stops after the first pass that
ends past ``--budget`` seconds. ART has no callback, so the script
records the time at the end of each pass (ART's progress-bar update) and the latest projected ``δ`` (a wrapper
around ART's ``projection``); the held-out fooling rate of each pass's ``δ`` is measured after the run. The
clock (classifier wrapping included) includes ART's own fooling rate on the training digits at the end of the
earlier passes (each pass's time is read just before that check).
"""

from __future__ import annotations

import argparse
import random
import time
from functools import partial

import numpy as np
import torch
from lightning.pytorch import Callback, Trainer, seed_everything
from torch.utils.data import Subset

from _machine import cpu_name, inputopt_revision
from inputopt.data import Digits
from inputopt.networks import build_network
from inputopt.objectives import Margin
from inputopt.optim import SignGradient
from inputopt.params import PixelImage
from inputopt.problem import Problem
from inputopt.runners.shared import SharedInputOptimization
from inputopt.transforms.insert import AddPerturbation

EPS, LR = 0.2, 0.005


def stack(data) -> torch.Tensor:
    return torch.stack([data[i][0] for i in range(len(data))])


def fooling_rate(network, images: torch.Tensor, delta: torch.Tensor) -> float:
    """The fraction of ``images`` whose prediction changes under ``clamp(images + delta, 0, 1)``."""
    with torch.no_grad():
        clean = network(images).argmax(1)
        return (network((images + delta).clamp(0, 1)).argmax(1) != clean).float().mean().item()


class Clock(Callback):
    """Training time (validations left out) at each validation, and a stop at the highest target."""

    def __init__(self, start: float, stop_at: float) -> None:
        self.start, self.stop_at, self.in_val, self.val_start = start, stop_at, 0.0, 0.0
        self.rows: list[tuple[int, float, float]] = []  # (step, training seconds, held-out fooling rate)

    def on_validation_start(self, trainer, module) -> None:
        self.val_start = time.perf_counter()

    def on_validation_end(self, trainer, module) -> None:
        now = time.perf_counter()
        step, rate = module.history[-1]
        self.rows.append((step, self.val_start - self.start - self.in_val, rate))
        self.in_val += now - self.val_start
        if rate >= self.stop_at:
            trainer.should_stop = True


def run_inputopt(train, test, steps: int, every: int, stop_at: float) -> list[tuple[int, float, float]]:
    seed_everything(0, verbose=False)
    start = time.perf_counter()
    problem = Problem("digits", Margin(), param=PixelImage(std=0, eps=EPS, norm="Linf"))
    module = SharedInputOptimization(problem, AddPerturbation(clamp=(0.0, 1.0)), train, test,
                                     optimizer=partial(SignGradient, lr=LR), batch_size=64, val_batch_size=450)
    clock = Clock(start, stop_at)
    Trainer(accelerator="cpu", max_steps=steps, val_check_interval=every, check_val_every_n_epoch=None,
            logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
            num_sanity_val_steps=0, callbacks=[clock]).fit(module)
    return clock.rows


class OutOfTime(Exception):
    pass


def run_art(train_images: torch.Tensor, attacker: str, passes: int,
            budget: float) -> list[tuple[int, float, np.ndarray]]:
    import art.attacks.evasion.universal_perturbation as uap
    from art.estimators.classification import PyTorchClassifier

    random.seed(0)
    np.random.seed(0)
    latest: list[np.ndarray] = []
    rows: list[tuple[int, float, np.ndarray]] = []
    project = uap.projection

    def recording_projection(values, eps, norm):
        out = project(values, eps, norm)
        latest[:] = [out]
        return out

    class PassClock:
        def __init__(self, *args, **kwargs) -> None:
            pass

        def update(self, n: int) -> None:
            noise = latest[0] if latest else np.zeros((1, *train_images.shape[1:]), dtype=np.float32)
            rows.append((len(rows) + 1, time.perf_counter() - start, noise.copy()))
            if rows[-1][1] > budget:
                raise OutOfTime

        def close(self) -> None:
            pass

    tqdm_class = uap.tqdm
    uap.projection, uap.tqdm = recording_projection, PassClock
    start = time.perf_counter()
    network = build_network("digits").eval()
    classifier = PyTorchClassifier(network, loss=torch.nn.CrossEntropyLoss(), input_shape=tuple(train_images.shape[1:]),
                                   nb_classes=10, clip_values=(0.0, 1.0), device_type="cpu")
    params = {"eps": EPS, "norm": np.inf} if attacker in ("fgsm", "pgd", "bim") else {}
    if attacker in ("deepfool", "pgd", "bim"):
        params["verbose"] = False
    attack = uap.UniversalPerturbation(classifier, attacker=attacker, attacker_params=params, delta=0.0,
                                       max_iter=passes, eps=EPS, norm=np.inf, verbose=False)
    try:
        attack.generate(train_images.numpy())
    except OutOfTime:
        pass
    finally:
        uap.projection, uap.tqdm = project, tqdm_class
    return rows


def first_reach(rows, target: float) -> str:
    hit = next((r for r in rows if r[-1] >= target), None)
    return "not reached" if hit is None else f"{hit[1]:6.1f} s (step/pass {hit[0]})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=512, help="the first N training digits")
    parser.add_argument("--targets", type=float, nargs="+", default=[0.5, 0.8])
    parser.add_argument("--steps", type=int, default=200, help="inputopt: most steps")
    parser.add_argument("--every", type=int, default=5, help="inputopt: validate every N steps")
    parser.add_argument("--attackers", nargs="+", default=["deepfool", "fgsm"],
                        help="ART's inner attacks, one run each: deepfool, fgsm, ...")
    parser.add_argument("--passes", type=int, default=10, help="ART: most passes (max_iter)")
    parser.add_argument("--budget", type=float, default=120.0,
                        help="ART: stop after the first pass that ends past this many seconds")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    try:
        import art
    except ImportError:
        raise SystemExit("needs ART: pip install adversarial-robustness-toolbox") from None
    torch.set_num_threads(args.threads)
    train, test = Subset(Digits("train"), range(args.train)), Digits("test")
    test_images = stack(test)
    network = build_network("digits").eval().requires_grad_(False)
    print(f"CPU: {cpu_name()}{inputopt_revision()}; torch threads {args.threads}; ART {art.__version__}; "
          f"{args.train} training digits, {len(test)} held-out; eps {EPS} Linf")

    rows = run_inputopt(train, test, args.steps, args.every, max(args.targets))
    print("inputopt (SharedInputOptimization, Margin, sign steps of 0.005, batch 64): step, s, held-out rate")
    for step, seconds, rate in rows:
        print(f"  {step:4d} {seconds:7.1f} {rate:.3f}")

    art_rows = {}
    for attacker in args.attackers:
        art_rows[attacker] = [(k, s, fooling_rate(network, test_images, torch.from_numpy(noise)))
                              for k, s, noise in run_art(stack(train), attacker, args.passes, args.budget)]
        print(f"ART (UniversalPerturbation, {attacker}): pass, s, held-out rate")
        for k, seconds, rate in art_rows[attacker]:
            print(f"  {k:4d} {seconds:7.1f} {rate:.3f}")

    for target in args.targets:
        print(f"held-out fooling rate >= {target}: inputopt {first_reach(rows, target)}"
              + "".join(f", ART {a} {first_reach(r, target)}" for a, r in art_rows.items()))


if __name__ == "__main__":
    main()
