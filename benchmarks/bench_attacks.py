"""PGD-L∞ in inputopt against torchattacks: the same attack, the same network, the same images.

Side by side in one process, on the **same network object and the same images**, PGD-L∞ with ε = 8/255,
step 2/255, 10 steps, random start (both libraries' defaults, but for the number of steps):

* ``torchattacks`` -- ``torchattacks.PGD(net, eps=8/255, alpha=2/255, steps=10, random_start=True)(x, y)``:
  the attack's construction and call. Its loop: forward, mean cross-entropy, ``autograd.grad``,
  ``x + α·sign(g)``, clamp to the ε-ball and to [0, 1]; the random start is one ``uniform_`` draw from
  torch's global RNG.
* ``inputopt`` -- ``inputopt.attacks.PGD(net, eps=8/255, alpha=2/255, steps=10, random_start=True)(x, y)``:
  construction and call. The same steps, through ``optimize`` (``PixelImage``, the loss path,
  ``SignGradient``, ``PixelImage.project_``), plus whether each image is adversarial at every step (an
  ``argmax`` of the logits the step computes anyway); its random start is drawn per image from a seeded
  generator (row ``i`` depends on ``(seed, i)`` only). The call returns only the images; ``attack.run``
  (not timed here) also measures the clean and the final images for its ``AttackResult``: two more
  no-grad forwards.

Both get the network in eval mode with ``requires_grad`` left on for its weights, as a user hands it over
(torchattacks computes only the input gradient with ``autograd.grad``; inputopt switches the weights'
``requires_grad`` off for the attack and restores it).

Cases: ``digits`` -- the zoo's digits CNN (``inputopt.zoo.digits_cnn("a")``) on ``--digits-images`` held-out
digits (1×32×32, default 256); ``resnet18`` -- torchvision ``resnet18(weights=None)`` (``torch.manual_seed(0)``)
on ``--resnet-images`` random 3×224×224 images (default 8) with random labels; ``efficientnet_lite0`` -- the zoo's
EfficientNet-Lite0 (ImageNet normalization built in) on the first ``--photos`` real photos of
``inputopt.data.Photos`` (3×224×224 in [0, 1], their ImageNet labels; default 4), with ``--lite-eps`` (default
0.0005, about 1/8 of a grey level) and α = ε/4: at 1/255 or more every photo is fooled (docs/networks.md) and the robust accuracy says nothing. For this case the
robust accuracy of both sides' images (fraction still classified as their label) is printed too, without
and with random start (seeded alike: ``torch.manual_seed(0)`` before each call).

Method: per case and thread setting, one untimed warm-up call per side, a check that both sides give the
same images without random start (largest difference, printed), then ``--reps`` repetitions interleaved
A B, B A, ...; for each call the wall time and the CPU time of the process (``time.process_time``, which
leaves out the time other processes hold the cores: the steadier figure on a shared machine; with more than
one thread it adds up the threads' time). Tables give medians (and wall-time minimums) over repetitions,
and the ratio inputopt / torchattacks (goal: ≤ 1.0). Thread settings: ``--threads`` (default ``1 0``: one
torch thread, then torch's default number of threads).

    python benchmarks/bench_attacks.py                 # both cases, 1 thread and the default, 5 reps
    python benchmarks/bench_attacks.py --cases digits --reps 9
    python benchmarks/bench_attacks.py --profile digits   # cProfile of one inputopt call, then exit
    python benchmarks/bench_attacks.py --cases efficientnet_lite0 --threads 2 --reps 3 --steps 5

Needs torchattacks next to inputopt (it is in the ``dev`` extra: ``pip install -e ".[dev]"``).
See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

import torch
import torchvision
from torch import Tensor, nn

try:
    import torchattacks
except ImportError as error:
    sys.exit(f"bench_attacks.py needs torchattacks next to inputopt ({error}); it is in the dev extra:\n"
             f"    pip install -e \".[dev]\"")

import inputopt
from inputopt.attacks import PGD
from inputopt.data import Photos
from inputopt.networks import build_network
from inputopt.zoo import digits_cnn, load_digits_split

from _machine import cpu_name, inputopt_revision

EPS, ALPHA = 8 / 255, 2 / 255
BUDGET = {"eps": EPS, "alpha": ALPHA}  # per case: the lite0 case sets its own in make_case


def make_case(name: str, args: argparse.Namespace) -> tuple[nn.Module, Tensor, Tensor, str]:
    if name == "digits":
        images, labels = load_digits_split("test")
        n = args.digits_images
        if n > len(images):
            images, labels = images.repeat((n + len(images) - 1) // len(images), 1, 1, 1), labels.repeat(
                (n + len(images) - 1) // len(images))
        return digits_cnn("a").eval(), images[:n], labels[:n], f"digits CNN, {n} images 1x32x32"
    if name == "efficientnet_lite0":
        BUDGET.update(eps=args.lite_eps, alpha=args.lite_eps / 4)
        photos = Photos(size=224)
        n = args.photos
        return (build_network("efficientnet_lite0").eval(), photos.images[:n], photos.labels[:n],
                f"efficientnet_lite0, {n} real photos 3x224x224 ({', '.join(photos.names[:n])}), "
                f"eps {args.lite_eps:.5f}, alpha {args.lite_eps / 4:.5f}")
    BUDGET.update(eps=EPS, alpha=ALPHA)
    torch.manual_seed(0)
    network = torchvision.models.resnet18(weights=None).eval()
    n = args.resnet_images
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(n, 3, 224, 224, generator=generator)
    labels = torch.randint(0, 1000, (n,), generator=generator)
    return network, images, labels, f"resnet18 (weights=None), {n} images 3x224x224"


def run_torchattacks(network: nn.Module, images: Tensor, labels: Tensor, steps: int, random_start: bool = True) -> Tensor:
    return torchattacks.PGD(network, eps=BUDGET["eps"], alpha=BUDGET["alpha"], steps=steps,
                            random_start=random_start)(images, labels)


def run_inputopt(network: nn.Module, images: Tensor, labels: Tensor, steps: int, random_start: bool = True) -> Tensor:
    return PGD(network, eps=BUDGET["eps"], alpha=BUDGET["alpha"], steps=steps, random_start=random_start)(images, labels)


SIDES: dict[str, Callable] = {"torchattacks": run_torchattacks, "inputopt": run_inputopt}


def timed(fn: Callable, *args) -> tuple[float, float]:
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    fn(*args)
    return time.perf_counter() - wall, time.process_time() - cpu


def bench(case: str, threads: int, args: argparse.Namespace) -> dict[str, dict[str, list[float]]]:
    torch.set_num_threads(threads)
    network, images, labels, described = make_case(case, args)
    unchanged = run_torchattacks(network, images, labels, args.steps, random_start=False)
    mine = run_inputopt(network, images, labels, args.steps, random_start=False)
    difference = (mine - unchanged).abs().max().item()
    if case == "efficientnet_lite0":
        def accuracy(x: Tensor) -> float:
            with torch.no_grad():
                return (network(x).argmax(1) == labels).float().mean().item()

        clean = accuracy(images)
        robust = {"torchattacks": accuracy(unchanged), "inputopt": accuracy(mine)}
        seeded = {}
        for name, side in SIDES.items():
            torch.manual_seed(0)
            seeded[name] = accuracy(side(network, images, labels, args.steps))
        print(f"  [{case}, {threads} thread(s)] clean accuracy {clean:.3f}; robust accuracy without random start: "
              f"torchattacks {robust['torchattacks']:.3f}, inputopt {robust['inputopt']:.3f}; with random start "
              f"(seeded): torchattacks {seeded['torchattacks']:.3f}, inputopt {seeded['inputopt']:.3f}", flush=True)
    for side in SIDES.values():  # warm-up
        side(network, images, labels, args.steps)
    times: dict[str, dict[str, list[float]]] = {name: {"wall": [], "cpu": []} for name in SIDES}
    names = list(SIDES)
    for rep in range(args.reps):
        for name in (names if rep % 2 == 0 else names[::-1]):
            wall, cpu = timed(SIDES[name], network, images, labels, args.steps)
            times[name]["wall"].append(wall)
            times[name]["cpu"].append(cpu)
            print(f"  [{case}, {threads} thread(s)] rep {rep + 1}/{args.reps} {name:<12} wall {wall:8.3f} s, "
                  f"cpu {cpu:8.3f} s", flush=True)
    print(f"  [{case}, {threads} thread(s)] {described}; without random start the two sides' images differ by at "
          f"most {difference:.1e}", flush=True)
    return times


def profile(case: str, args: argparse.Namespace) -> None:
    import cProfile
    import pstats

    torch.set_num_threads(1)
    network, images, labels, described = make_case(case, args)
    run_inputopt(network, images, labels, args.steps)
    print(f"cProfile of one inputopt PGD call, {described}, 1 thread")
    profiler = cProfile.Profile()
    profiler.runcall(run_inputopt, network, images, labels, args.steps)
    pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=["digits", "resnet18"], choices=["digits", "resnet18", "efficientnet_lite0"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 0],
                        help="torch.set_num_threads settings to run; 0: torch's default")
    parser.add_argument("--reps", type=int, default=5, help="interleaved repetitions per side")
    parser.add_argument("--steps", type=int, default=10, help="PGD steps")
    parser.add_argument("--digits-images", type=int, default=256)
    parser.add_argument("--resnet-images", type=int, default=8)
    parser.add_argument("--photos", type=int, default=4, help="real photos for the efficientnet_lite0 case")
    parser.add_argument("--lite-eps", type=float, default=0.0005, help="L-inf budget of the efficientnet_lite0 case")
    parser.add_argument("--profile", choices=["digits", "resnet18", "efficientnet_lite0"], help="profile one inputopt call and exit")
    args = parser.parse_args()
    if args.profile:
        profile(args.profile, args)
        return
    default_threads = torch.get_num_threads()
    print(f"date      {datetime.datetime.now().isoformat(timespec='seconds')}")
    print(f"versions  torch {torch.__version__}, torchvision {torchvision.__version__}, torchattacks "
          f"{torchattacks.__version__}, inputopt {inputopt.__version__}{inputopt_revision()}, "
          f"python {platform.python_version()}")
    print(f"machine   {cpu_name()}, {os.cpu_count()} logical cores; torch's default threads {default_threads}")
    print(f"setup     PGD-Linf eps 8/255, alpha 2/255 (efficientnet_lite0: see its case line), {args.steps} steps, random start; {args.reps} interleaved "
          f"reps after one warm-up call per side; time = construction + call")
    rows = []
    t_total = time.perf_counter()
    for case in args.cases:
        for threads in args.threads:
            threads = threads or default_threads
            rows.append((case, threads, bench(case, threads, args)))
    print(f"\ntotal time {time.perf_counter() - t_total:.0f} s\n")
    header = (f"{'case':<9} {'threads':>7} | {'torchattacks wall':>17} {'inputopt wall':>13} {'ratio':>6} | "
              f"{'wall min ratio':>14} | {'torchattacks cpu':>16} {'inputopt cpu':>12} {'ratio':>6}")
    print(header)
    print("-" * len(header))
    for case, threads, times in rows:
        ta, io = times["torchattacks"], times["inputopt"]
        wall_ta, wall_io = statistics.median(ta["wall"]), statistics.median(io["wall"])
        cpu_ta, cpu_io = statistics.median(ta["cpu"]), statistics.median(io["cpu"])
        print(f"{case:<9} {threads:>7} | {wall_ta:>15.3f} s {wall_io:>11.3f} s {wall_io / wall_ta:>6.3f} | "
              f"{min(io['wall']) / min(ta['wall']):>14.3f} | {cpu_ta:>14.3f} s {cpu_io:>10.3f} s {cpu_io / cpu_ta:>6.3f}")
    print("\nMedians over the reps (seconds per attack call: construction + call); ratio = inputopt / torchattacks.")


if __name__ == "__main__":
    main()
