"""Adaptive attacks on the digits model: BPDA through the gradient-masking input quantization of the evaluation
checks, and EOT on a randomized defence (random resizing and padding): the figures of docs/adversarial.md.

    python examples/adaptive_attacks.py         # 100 held-out digits, one thread; prints the figures and tables
"""

from __future__ import annotations

import time

import torch

from inputopt.attacks import BPDA, EOT, PGD, QuantizedInput, RandomResizePad, checks_table, evaluation_checks
from inputopt.zoo import digits_cnn, load_digits_split

torch.set_num_threads(1)
images, labels = (t[:100] for t in load_digits_split("test"))
net = digits_cnn("a").eval()


def robust(model: torch.nn.Module, adversarial: torch.Tensor, draws: int = 1) -> float:
    """The robust accuracy of ``model`` (averaged over ``draws`` forwards of a randomized one, seeded)."""
    torch.manual_seed(1234)
    with torch.no_grad():
        return sum((model(adversarial).argmax(1) == labels).float().mean().item() for _ in range(draws)) / draws


# BPDA: PGD through the rounding's identity gradient
masked = QuantizedInput(net, levels=8)
settings = dict(eps=0.1, alpha=0.02, steps=20)
alone, with_bpda = PGD(masked, **settings), PGD(BPDA.inside(masked, "quantize"), **settings)
print("## BPDA (PGD, L-inf eps 0.1, 20 steps of 0.02)\n")
print(f"PGD on the digits model: robust accuracy {robust(net, PGD(net, **settings)(images, labels)):.1%}")
print(f"PGD on the quantized model: {robust(masked, alone(images, labels)):.1%}")
print(f"PGD with BPDA on the quantized model: {robust(masked, with_bpda(images, labels)):.1%}\n")
print(f"### checks of PGD alone\n\n{checks_table(evaluation_checks(alone, images, labels))}\n")
print(f"### checks of PGD with BPDA\n\n{checks_table(evaluation_checks(with_bpda, images, labels))}\n")

# EOT: PGD on the expectation over 10 draws of random resizing and padding
randomized = RandomResizePad(net, min_scale=0.75)
print("## EOT (random resize to 75-100 % and pad; robust accuracy averaged over 10 random forwards)\n")
print(f"clean: {robust(randomized, images, 10):.1%}")
for eps in (0.05, 0.1):
    settings = dict(eps=eps, alpha=eps / 4, steps=10)
    start = time.perf_counter()
    plain = PGD(randomized, **settings)(images, labels)
    middle = time.perf_counter()
    eot = PGD(EOT(randomized, n=10), **settings)(images, labels)
    end = time.perf_counter()
    print(f"eps {eps}: PGD {robust(randomized, plain, 10):.1%} ({middle - start:.1f} s), "
          f"PGD + EOT(10) {robust(randomized, eot, 10):.1%} ({end - middle:.1f} s)")
