"""Adaptive attacks (Athalye et al. 2018; Tramèr et al. 2020): models that every gradient attack can take.

- :class:`BPDA` replaces a module's backward by a differentiable approximation (the identity by default): an
  attack gets a useful gradient through a non-differentiable layer (input quantization, JPEG, thresholding).
- :class:`EOT` takes the expectation over seeded draws of the model's randomness, per image: an attack follows
  the mean of the draws' gradients of its loss (random resizing and padding, noise, random transforms).

Both are ``nn.Module`` wrappers: ``PGD(BPDA.inside(model, "quantize"), eps=...)``, ``APGD(EOT(model, 20), ...)``,
so they compose with every attack (PGD, APGD, FMN, CW, FAB...) and with each other. The network itself is
left untouched. :class:`RandomResizePad` is a randomized defence to try them on.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inputopt.functional.random import RowRandom

__all__ = ["BPDA", "EOT", "RandomResizePad"]


class BPDA(nn.Module):
    """Backward pass differentiable approximation: ``module``'s output in the forward pass, the gradient of
    ``backward`` in the backward pass.

    The output is ``g(x) + (module(x) − g(x)).detach()``: its value is ``module(x)``, its gradient ``∂g/∂x``.

    Args:
        module: the (non-differentiable) module.
        backward: ``"identity"`` (``g(x) = x``; the output must have the input's shape), or a differentiable
            function (or module) ``g`` that approximates ``module``.

    Example:
        >>> from inputopt.attacks import QuantizedInput
        >>> from inputopt.zoo import digits_cnn
        >>> masked = QuantizedInput(digits_cnn("a").eval(), levels=4)
        >>> x = torch.rand(2, 1, 32, 32, requires_grad=True)
        >>> BPDA.inside(masked, "quantize")(x).sum().backward()
        >>> bool(x.grad.abs().sum() > 0), torch.equal(BPDA.inside(masked, "quantize")(x), masked(x))
        (True, True)
    """

    def __init__(self, module: nn.Module, backward: str | Callable[[Tensor], Tensor] = "identity") -> None:
        super().__init__()
        if not callable(module):
            raise ValueError(f"module must be a module or a function, got {module!r}")
        if backward != "identity" and not callable(backward):
            raise ValueError(f"backward must be 'identity' or a differentiable function, got {backward!r}")
        self.module = module
        self.approximation = backward

    def forward(self, x: Tensor) -> Tensor:
        value = self.module(x)
        approximation = x if self.approximation == "identity" else self.approximation(x)
        if approximation.shape != value.shape:
            raise ValueError(f"BPDA's backward function returns shape {tuple(approximation.shape)} where the module "
                             f"returns {tuple(value.shape)}: they must match ('identity' needs a module that keeps "
                             f"the input's shape)")
        return approximation + (value - approximation).detach()

    @classmethod
    def inside(cls, network: nn.Module, layer: str, backward: str | Callable[[Tensor], Tensor] = "identity") -> nn.Module:
        """A copy of ``network`` whose submodule ``layer`` (a dotted name) runs under :class:`BPDA`. Only the
        modules on the way to ``layer`` are copied: the weights are shared, ``network`` is unchanged.

        Example:
            >>> net = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
            >>> type(BPDA.inside(net, "1")[1]).__name__, type(net[1]).__name__
            ('BPDA', 'ReLU')
        """
        names = dict(network.named_modules())
        if not layer or layer not in names:
            raise ValueError(f"network has no submodule {layer!r}; its submodules: "
                             f"{', '.join(n for n in names if n)[:500]}")
        root = copy.copy(network)
        root._modules = dict(network._modules)
        parent, *path = root, *layer.split(".")[:-1]
        for name in path:
            child = copy.copy(parent._modules[name])
            child._modules = dict(child._modules)
            parent._modules[name] = child
            parent = child
        last = layer.split(".")[-1]
        parent._modules[last] = cls(parent._modules[last], backward)
        return root


class EOT(nn.Module):
    """Expectation over transformation: ``model`` over ``n`` seeded draws of its randomness, per image.

    Every gradient attack takes it in place of the model, and follows the mean of the ``n`` draws' gradients of
    its loss, ``(1/n) Σ_k ∇ L(model_k(x))`` (the original AutoAttack's EOT), not the gradient of the loss of the
    mean output: the attacks' loss forward (:class:`~inputopt.loss.LossPath`) sees that the network is an
    expectation, scores its objective on each draw's output (:meth:`draws`) and averages it per image before the
    backward, which gives the mean gradient. (Attacks that read the logits' differences, FAB and DeepFool, are
    linear in the output: the gradient of the mean output is already their mean gradient.) Its plain forward, the
    mean of the draws' outputs, is what success is judged on: measure the final robust accuracy on ``model``
    itself.

    The draws are seeded per image: the ``n`` draws of image ``i`` are one forward of ``model`` on ``n`` copies of
    it, with torch's random generators seeded from ``RowRandom(seed)``'s stream ``"eot.draws"`` at a key that is
    a hash of the image's values (the caller's random state is restored after). So an image's draws, and its
    gradient, depend on the seed and on the image alone: not on the batch it is in, its position there or how
    often the model was called; a new point of an attack gets new draws. The cost: one forward of ``n`` rows per
    image (as many rows as ``n`` forwards of the batch, in ``B`` calls), and the images' values hashed on the CPU.
    The randomness must be active in eval mode (attacks put the model in eval mode).

    Args:
        model: the randomized model.
        n: draws per image (AutoAttack's "rand": 20).
        seed: the seed of the draws.

    Example:
        >>> from inputopt.zoo import digits_cnn
        >>> model = EOT(RandomResizePad(digits_cnn("a").eval()), n=4)
        >>> x = torch.rand(3, 1, 32, 32)
        >>> model.draws(x).shape, torch.equal(model(x), model.draws(x).mean(0))
        (torch.Size([4, 3, 10]), True)
        >>> torch.equal(model(x)[1:], model(x[1:])), torch.equal(model(x), EOT(model.model, n=4, seed=1)(x))
        (True, False)
    """

    #: The attacks' loss forward averages the objective over :meth:`draws` (:class:`~inputopt.loss.LossPath`).
    expectation = True

    def __init__(self, model: nn.Module, n: int = 20, seed: int = 0) -> None:
        super().__init__()
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be an int >= 1, got {n!r}")
        self.model, self.n, self.seed = model, n, seed
        self.stream = RowRandom(seed).stream("eot.draws")

    def row_seeds(self, x: Tensor) -> list[int]:
        """The seed of each image's draws: the stream's seed at a 63-bit hash of the image's values (its bytes).

        Example:
            >>> eot = EOT(torch.nn.Identity(), n=2)
            >>> seeds = eot.row_seeds(torch.tensor([[0.0, 1.0], [2.0, 3.0], [0.0, 1.0]]))
            >>> seeds[0] == seeds[2] != seeds[1], seeds[1] == eot.row_seeds(torch.tensor([[2.0, 3.0]]))[0]
            (True, True)
        """
        values = x.detach().flatten(1).cpu().contiguous().numpy()
        keys = [int.from_bytes(hashlib.blake2b(row.tobytes(), digest_size=8).digest(), "little") >> 1
                for row in values]
        return [self.stream.seed_of(key) for key in keys]

    def draws(self, x: Tensor) -> Tensor:
        """``(n, B, ...)``: the output of every draw for every image (draw ``k`` of image ``i`` at ``[k, i]``)."""
        devices = [x.device] if x.device.type == "cuda" else []
        outputs = []
        with torch.random.fork_rng(devices=devices):
            for i, seed in enumerate(self.row_seeds(x)):
                torch.manual_seed(seed)
                outputs.append(self.model(x[i:i + 1].repeat(self.n, *[1] * (x.ndim - 1))))
        return torch.stack(outputs, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.draws(x).mean(0)


class RandomResizePad(nn.Module):
    """A randomized defence (after Xie et al. 2018): each image is shrunk by a random factor in ``[min_scale, 1]``
    and placed at a random position of a zero-padded canvas of its own size, before ``network``.

    Differentiable (an affine grid sample): its gradient is that of one random draw. Draws come from torch's
    global generator, as a deployed randomized defence's do (:class:`EOT` seeds them).

    Args:
        network: the classifier.
        min_scale: the smallest scale factor.

    Example:
        >>> from inputopt.zoo import digits_cnn
        >>> RandomResizePad(digits_cnn("a").eval())(torch.rand(3, 1, 32, 32)).shape
        torch.Size([3, 10])
    """

    def __init__(self, network: nn.Module, min_scale: float = 0.75) -> None:
        super().__init__()
        if not 0 < min_scale <= 1:
            raise ValueError(f"min_scale must be in (0, 1], got {min_scale!r}")
        self.network, self.min_scale = network, float(min_scale)

    def forward(self, x: Tensor) -> Tensor:
        batch = x.shape[0]
        scale = self.min_scale + (1 - self.min_scale) * torch.rand(batch, device=x.device)
        shift = (1 - scale).unsqueeze(1) * (2 * torch.rand(batch, 2, device=x.device) - 1)
        theta = torch.zeros(batch, 2, 3, device=x.device, dtype=x.dtype)
        theta[:, 0, 0] = theta[:, 1, 1] = 1 / scale  # output pixel -> input pixel: the image shrinks by scale
        theta[:, :, 2] = -shift / scale.unsqueeze(1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return self.network(F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False))
