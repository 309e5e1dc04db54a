"""MACO-style importance maps of a fit: :class:`SaveImportance`."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor
from torch.utils.hooks import RemovableHandle

from inputopt.callbacks._checks import _output_dir
from inputopt.params.base import ImageParam
from inputopt.results import atomic_write, save_grid

__all__ = ["SaveImportance"]


class SaveImportance(Callback):
    r"""Accumulate a MACO-style importance map and save it beside the images at the end of a run.

    The importance of a pixel is :math:`\sum_t |\partial L_t / \partial x_t|`, the magnitude of the
    gradient of the loss with respect to the parameterization's output images ``x = param()`` summed over
    the optimization steps, per image and channel. It is taken at the images *before* the robustness
    transforms, so the transforms are undone: backpropagation through the jitter, scaling and rotation
    carries each gradient back to the pixel of the image that the transform moved, as Fel et al. 2023 ask
    (a test checks it with a quarter turn). It is the gradient of the whole loss, objective and priors
    (MACO runs have no prior). It works with any parameterization: a forward hook on ``param`` adds a
    gradient hook to its output during training only.

    At the end it writes ``importance.pt`` (``(B, C, H, W)``, the sums) and ``importance.png`` (a grid of
    heat maps: the sum over channels, divided by each image's maximum; white is most important), in the
    folder :class:`~inputopt.callbacks.images.SaveImages` writes to. A resumed run starts a new sum.

    Args:
        dirpath: where to write; default the trainer's log directory (or its root directory).
        nrow: heat maps per grid row (default: a square-ish grid).
        scale: integer upscaling of the PNG (nearest neighbour), for small images.

    Attributes:
        importance: the ``(B, C, H, W)`` sums so far (empty before the first step).

    Example:
        >>> from lightning.pytorch import Trainer
        >>> trainer = Trainer(max_steps=100, callbacks=[SaveImportance("results/maco", scale=4)])
    """

    def __init__(self, dirpath: str | os.PathLike | None = None, nrow: int | None = None, scale: int = 1) -> None:
        self.dirpath = dirpath
        self.nrow = nrow
        self.scale = scale
        self.importance = torch.empty(0)
        self.paths: list[Path] = []
        self._handle: RemovableHandle | None = None

    def _accumulate(self, grad: Tensor) -> None:
        grad = grad.detach().abs().float()
        self.importance = grad if self.importance.shape != grad.shape else self.importance + grad

    def _hook(self, module, inputs, output: Tensor) -> None:
        if output.requires_grad:
            output.register_hook(self._accumulate)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        param = getattr(pl_module, "param", None)
        if not isinstance(param, ImageParam):
            raise TypeError(f"SaveImportance works with a module whose images come from an ImageParam `param`, "
                            f"not {type(pl_module).__name__}")
        self.importance = torch.empty(0)
        self._handle = param.register_forward_hook(self._hook)

    def heat_maps(self) -> Tensor:
        """The ``(B, 1, H, W)`` heat maps in [0, 1]: the importance summed over channels, over each image's maximum."""
        total = self.importance.sum(1, keepdim=True)
        return total / total.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1, 1)

    def _remove_hook(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._remove_hook()

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._remove_hook()
        out = _output_dir(trainer, self.dirpath)
        if not trainer.is_global_zero or self.importance.numel() == 0:
            return
        out.mkdir(parents=True, exist_ok=True)
        importance = self.importance.cpu()
        atomic_write(out / "importance.pt", lambda handle: torch.save(importance, handle))
        grid = save_grid(self.heat_maps().cpu(), out / "importance.png", "clamp", self.nrow, self.scale)
        self.paths = [grid, out / "importance.pt"]
        rank_zero_info(f"inputopt: wrote {grid} (importance maps of {importance.shape[0]} images)")
