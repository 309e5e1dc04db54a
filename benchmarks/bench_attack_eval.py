"""Robust accuracy over a data set: ``inputopt``'s Lightning runner against a torchattacks loop, in images/s.

Side by side in one process, on the **same network object and the same DataLoader** (the 450 held-out
digits, batch size ``--batch-size``, no shuffling), PGD-L∞ with ε ``--eps``, step ``--alpha``, ``--steps``
steps, random start:

* ``torchattacks`` -- the loop a user writes::

      attack = torchattacks.PGD(net, eps=..., alpha=..., steps=..., random_start=True)
      for x, y in loader:
          correct += (net(x).argmax(1) == y).sum(); robust += (net(attack(x, y)).argmax(1) == y).sum()

  (clean and robust accuracy: what the runner reports too, without norms or success rates).
* ``inputopt`` -- ``Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False).test(
  AttackEvaluation(PGD(net, ...), dataset, batch_size=..., sphere_points=0))``: the Trainer's setup and
  test loop, the attack inside ``test_step``, and the torchmetrics metrics (clean accuracy, robust
  accuracy, success rate, perturbation norms), timed from the runner's construction to the return of
  ``test``. The sphere check is off (``sphere_points=0``): torchattacks has none.

Both report the same robust accuracy up to the random starts (different generators); the script prints
both. Method: one untimed warm-up per side, then ``--reps`` repetitions interleaved A B, B A, ...; wall
and CPU time of the process (``time.process_time``: steadier on a shared machine) per repetition;
medians; throughput = images / median time; ratio = inputopt's throughput / torchattacks' (goal: close to
1, i.e. Lightning's runner costs nothing that matters).

    python benchmarks/bench_attack_eval.py                  # 1 thread, 5 reps (~2 min here)
    python benchmarks/bench_attack_eval.py --threads 0 --reps 3

Needs torchattacks (the ``dev`` extra). See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import os
import statistics
import sys
import time
import warnings

import torch
from torch.utils.data import DataLoader

try:
    import torchattacks
except ImportError as error:
    sys.exit(f"bench_attack_eval.py needs torchattacks next to inputopt ({error}); it is in the dev extra:\n"
             f"    pip install -e \".[dev]\"")
from lightning.pytorch import Trainer

import inputopt
from inputopt.attacks import PGD
from inputopt.data import Digits
from inputopt.runners.attack import AttackEvaluation
from inputopt.zoo import digits_cnn

from _machine import cpu_name, inputopt_revision



def run_torchattacks(network, dataset, args) -> float:
    attack = torchattacks.PGD(network, eps=args.eps, alpha=args.alpha, steps=args.steps, random_start=True)
    robust = total = 0
    for images, labels in DataLoader(dataset, batch_size=args.batch_size):
        adversarial = attack(images, labels)
        with torch.no_grad():
            robust += int((network(adversarial).argmax(1) == labels).sum())
        total += len(labels)
    return robust / total


def run_inputopt(network, dataset, args) -> float:
    runner = AttackEvaluation(PGD(network, eps=args.eps, alpha=args.alpha, steps=args.steps, random_start=True),
                              dataset, batch_size=args.batch_size, sphere_points=0)
    Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
            accelerator="cpu", devices=1).test(runner, verbose=False)
    return runner.results[0]["robust_accuracy"]


SIDES = {"torchattacks": run_torchattacks, "inputopt": run_inputopt}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--alpha", type=float, default=0.01)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--reps", type=int, default=5, help="interleaved repetitions per side")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads; 0: torch's default")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    torch.set_num_threads(args.threads or torch.get_num_threads())
    network = digits_cnn("a").eval()
    dataset = Digits("test")
    samples = len(dataset)
    print(f"date      {datetime.datetime.now().isoformat(timespec='seconds')}")
    print(f"versions  torch {torch.__version__}, lightning {__import__('lightning').__version__}, torchattacks "
          f"{torchattacks.__version__}, inputopt {inputopt.__version__}{inputopt_revision()}")
    print(f"machine   {cpu_name()}, {os.cpu_count()} logical cores; {torch.get_num_threads()} torch thread(s)")
    print(f"setup     digits CNN, {samples} held-out digits, batch {args.batch_size}; PGD-Linf eps {args.eps:g}, "
          f"alpha {args.alpha:g}, {args.steps} steps, random start; {args.reps} interleaved reps after a warm-up")
    accuracy = {name: side(network, dataset, args) for name, side in SIDES.items()}  # warm-up
    times = {name: {"wall": [], "cpu": []} for name in SIDES}
    names = list(SIDES)
    for rep in range(args.reps):
        for name in (names if rep % 2 == 0 else names[::-1]):
            gc.collect()
            wall, cpu = time.perf_counter(), time.process_time()
            accuracy[name] = SIDES[name](network, dataset, args)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            times[name]["wall"].append(wall)
            times[name]["cpu"].append(cpu)
            print(f"  rep {rep + 1}/{args.reps} {name:<12} wall {wall:7.2f} s  cpu {cpu:7.2f} s  robust accuracy "
                  f"{accuracy[name]:.3f}", flush=True)
    print()
    header = f"{'side':<12} | {'images/s (wall)':>15} {'images/s (cpu)':>14} | {'robust accuracy':>15}"
    print(header)
    print("-" * len(header))
    rate = {}
    for name in SIDES:
        rate[name] = {kind: samples / statistics.median(times[name][kind]) for kind in ("wall", "cpu")}
        print(f"{name:<12} | {rate[name]['wall']:15.1f} {rate[name]['cpu']:14.1f} | {accuracy[name]:15.3f}")
    print(f"\nthroughput ratio inputopt / torchattacks: wall {rate['inputopt']['wall'] / rate['torchattacks']['wall']:.2f}, "
          f"cpu {rate['inputopt']['cpu'] / rate['torchattacks']['cpu']:.2f}")


if __name__ == "__main__":
    main()
