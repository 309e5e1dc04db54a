"""The LightningModule whose single trainable parameter is the input."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn
from torch.utils.data import DataLoader

from inputopt._config import instantiate
from inputopt.capture import capture_activations
from inputopt.functional.init import seeded_noise
from inputopt.networks import Normalize, build_network, class_names, freeze
from inputopt.objectives.base import InputObjective
from inputopt.priors.base import Prior

__all__ = ["InputOptimization"]

#: Precisions that would cast the input itself (and the priors' sums of squares) to half precision.
REFUSED_PRECISIONS = ("16-true", "bf16-true")


def _distinct(names: list[str], sep: str) -> list[str]:
    """Names made unique by appending the position to those that occur more than once."""
    return [f"{n}{sep}{i}" if names.count(n) > 1 else n for i, n in enumerate(names)]


def _load_images(init: Tensor | str | Path) -> Tensor:
    if isinstance(init, Tensor):
        return init.detach().float()
    path = Path(init).expanduser()
    if path.suffix in (".pt", ".pth"):
        return torch.load(path, map_location="cpu", weights_only=True).float()
    from PIL import Image
    from torchvision.transforms.functional import pil_to_tensor

    with Image.open(path) as image:
        return pil_to_tensor(image.convert("RGB")).float().div(255)


class InputOptimization(LightningModule):
    """Optimize the input of a frozen network: ``loss = Σ_i [Σ_p w_p·h_p(x_i) − f_i(x_i)]``.

    The input ``x`` of shape ``(B, C, H, W)`` is the module's only trainable parameter. The network is
    frozen, kept in eval mode whatever mode Lightning sets (BatchNorm statistics and Dropout untouched),
    and is neither in the optimizer nor in checkpoints: it is held outside the module tree and rebuilt
    from the hyperparameters. Devices, precision, logging, checkpoints and progress bars come from the
    ``Trainer``; the number of steps is ``Trainer(max_steps=...)``.

    Args:
        network: a network name for :func:`inputopt.networks.build_network` (zoo, torchvision, dotted
            path), or any ``nn.Module`` (frozen in place; then pass it again to ``load_from_checkpoint``).
        objective: what to maximize, one ``(B,)`` score.
        priors: penalties, each weighted by its ``weight``.
        image_shape: ``(C, H, W)`` of the random starting input.
        batch_size: number of images when neither the objective (one image per unit) nor ``init`` says.
        init: starting images instead of noise: a ``(B, C, H, W)`` or ``(C, H, W)`` tensor, or the path
            of a ``.pt`` tensor or an image file (read in [0, 1]). A path is saved in the hyperparameters;
            a tensor is not (pass it again to ``load_from_checkpoint``, like a network given as a module).
        init_mean: mean of the random starting input.
        init_std: standard deviation of the random starting input.
        weights: torchvision weights name for a named network (``None``: random weights).
        state_dict: local state_dict file for a named network.
        mean: per-channel mean subtracted before the network (with ``std``), so inputs live in pixel space.
        std: per-channel standard deviation the input is divided by.
        optimizer: a callable that builds the optimizer from the parameters, e.g.
            ``functools.partial(torch.optim.SGD, lr=0.1)``; ``None`` is Adam with lr 0.1.
        clamp: ``(low, high)``: project the input into this box after every step (e.g. ``(0, 1)``).
        freeze_done: stop updating an image once the objective says it is done (e.g. its label flipped),
            so that its perturbation stays as small as the run allows.
        seed: the seed of the starting noise; image ``i``'s noise depends only on ``(seed, unit_i)``.
        log_per_image: also log every image's objective and loss as ``objective/<layer>-<unit>`` and
            ``loss/<layer>-<unit>`` (the means over images are always logged).

    Example:
        >>> from lightning.pytorch import Trainer
        >>> from inputopt.objectives import UnitActivation
        >>> from inputopt.priors import MultiScaleEdgeEnergy
        >>> module = InputOptimization("digits", UnitActivation(None, unit=[3, 8]),
        ...                            [MultiScaleEdgeEnergy(weight=0.1)], image_shape=(1, 32, 32))
        >>> trainer = Trainer(max_steps=5, logger=False, enable_checkpointing=False,
        ...                   enable_progress_bar=False, enable_model_summary=False)
        >>> trainer.fit(module)
        >>> module.input.shape
        torch.Size([2, 1, 32, 32])
    """

    def __init__(
        self,
        network: str | nn.Module,
        objective: InputObjective,
        priors: Sequence[Prior] | None = None,
        image_shape: Sequence[int] = (3, 224, 224),
        batch_size: int | None = None,
        init: Tensor | str | None = None,
        init_mean: float = 0.0,
        init_std: float = 0.01,
        weights: str | None = None,
        state_dict: str | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        optimizer: OptimizerCallable | None = None,
        clamp: Sequence[float] | None = None,
        freeze_done: bool = False,
        seed: int = 0,
        log_per_image: bool = False,
    ) -> None:
        super().__init__()
        objective = instantiate(objective) if isinstance(objective, Mapping) else objective
        priors = [instantiate(p) if isinstance(p, Mapping) else p for p in (priors or [])]
        ignore = [name for name, value in (("network", network), ("init", init)) if not isinstance(value, (str, type(None)))]
        with warnings.catch_warnings():  # replaced by their configs just below
            warnings.filterwarnings("ignore", message=".*is an instance of `nn.Module`.*")
            self.save_hyperparameters(ignore=ignore)
        # Checkpoints keep objective and priors as plain {"class_path", "init_args"} data (loadable with
        # weights_only=True) and rebuild them from it; LightningCLI already stores them in that form.
        if not isinstance(self.hparams.get("objective"), Mapping):
            self.hparams["objective"] = objective.config()
        if any(not isinstance(p, Mapping) for p in self.hparams.get("priors") or []):
            self.hparams["priors"] = [p.config() for p in priors]

        if isinstance(network, str):
            with torch.random.fork_rng(devices=[]):  # random weights, when asked for, depend on the seed only
                torch.manual_seed(seed)
                net = build_network(network, weights=weights, state_dict=state_dict)
        else:
            if weights is not None or state_dict is not None:
                raise ValueError("weights and state_dict apply to a network given by name, not to a module")
            net = freeze(network)
        object.__setattr__(self, "_network", net)  # outside the module tree: not trained, saved or mode-switched
        self.network_name = network if isinstance(network, str) else None
        self.objective = objective
        self.priors = nn.ModuleList(priors)
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std for input normalization, or neither")
        self.normalize = Normalize(mean, std) if mean is not None else None
        self.optimizer_factory = optimizer if optimizer is not None else partial(torch.optim.Adam, lr=0.1)
        self.clamp = self._check_clamp(clamp)
        self.freeze_done = freeze_done
        self.log_per_image = log_per_image
        self.prior_names = self._prior_names(self.priors)

        start = self._starting_input(image_shape, batch_size, init, init_mean, init_std, seed)
        self.input = nn.Parameter(start)
        self.register_buffer("start", start.clone(), persistent=False)  # rebuilt from the hparams on resume
        self.register_buffer("done", torch.zeros(start.shape[0], dtype=torch.bool))
        self._prepared = False

    # -- construction helpers -------------------------------------------------------------------
    @staticmethod
    def _check_clamp(clamp: Sequence[float] | None) -> tuple[float, float] | None:
        if clamp is None:
            return None
        if len(clamp) != 2 or not clamp[0] < clamp[1]:
            raise ValueError(f"clamp must be (low, high) with low < high, got {clamp!r}")
        return float(clamp[0]), float(clamp[1])

    @staticmethod
    def _prior_names(priors: Sequence[Prior]) -> list[str]:
        return _distinct([type(p).__name__ for p in priors], "_")

    def _resolve_objective(self, image_shape: Sequence[int]) -> None:
        """Let the objective fix shape-dependent targets (``units="all"``) with a one-image zero probe,
        which the capture stops at the objective's deepest layer."""
        if self.objective.resolved:
            return
        with torch.no_grad():
            self.objective.resolve(self.activations(torch.zeros(1, *image_shape)))

    def _starting_input(self, image_shape, batch_size, init, init_mean, init_std, seed) -> Tensor:
        if init is not None:
            images = _load_images(init)
            if images.ndim == 3:
                images = images.unsqueeze(0)
            if images.ndim != 4:
                raise ValueError(f"init must be images of shape (B, C, H, W) or (C, H, W), got shape "
                                 f"{tuple(images.shape)}")
            self._resolve_objective(images.shape[1:])
            rows = self.objective.num_rows
            if rows is not None and images.shape[0] != rows:
                raise ValueError(f"the objective targets {rows} units, one per image, but init has "
                                 f"{images.shape[0]} images")
            return images.clone()
        if len(image_shape) != 3 or not all(isinstance(s, int) and s > 0 for s in image_shape):
            raise ValueError(f"image_shape must be (C, H, W) positive ints, got {tuple(image_shape)}")
        self._resolve_objective(image_shape)
        rows = self.objective.num_rows
        if rows is not None and batch_size is not None and batch_size != rows:
            raise ValueError(f"batch_size={batch_size} but the objective targets {rows} units, one per image")
        batch = rows or batch_size or 1
        return seeded_noise(image_shape, self.objective.row_keys(batch), seed, init_mean, init_std)

    # -- the network, outside the module tree ---------------------------------------------------
    @property
    def network(self) -> nn.Module:
        """The frozen network (eval mode, no gradients, not a submodule)."""
        return self._network

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        self._network._apply(fn, *args, **kwargs)
        return self

    def activations(self, x: Tensor, layers: Iterable[str] | None = None) -> dict[str, Tensor]:
        """Outputs of ``layers`` (default: the objective's) for input ``x``, stopping after the deepest."""
        if self.normalize is not None:
            x = self.normalize(x)
        return capture_activations(self.network, x, self.objective.layers if layers is None else layers)

    def forward(self, x: Tensor | None = None) -> Tensor:
        """The network's output for ``x`` (default: the current input), normalization included."""
        return self.activations(self.input if x is None else x, [""])[""]

    @torch.no_grad()
    def predict_classes(self, x: Tensor | None = None) -> Tensor:
        """The predicted class of each image of ``x`` (default: the current input)."""
        return self(x).argmax(1)

    def image_names(self) -> list[str]:
        """A name per image, ``<layer>-<unit>`` (``output`` for the network's output), for files and logs."""
        layer = self.objective.layer or "output"
        return _distinct([f"{layer}-{key}" for key in self.objective.row_keys(self.input.shape[0])], "-")

    @property
    def class_names(self) -> list[str] | None:
        """The network's class names, when known."""
        return class_names(self.network_name) if self.network_name else None

    # -- Lightning hooks ----------------------------------------------------------------------
    def prepare(self) -> None:
        """Check the objective's targets against real shapes and let it read the starting input."""
        if not self._prepared:
            self.objective.prepare(self.activations, self.input.detach())
            self._prepared = True

    def setup(self, stage: str) -> None:
        precision = str(getattr(self.trainer, "precision", ""))
        if precision in REFUSED_PRECISIONS:
            raise ValueError(
                f"precision {precision!r} would cast the input itself to half precision, so small updates "
                f"vanish and the priors' sums of squares lose accuracy; use '16-mixed' or 'bf16-mixed' "
                f"(the network runs in half precision, the input and priors stay float32)")
        self.prepare()  # before a checkpoint is restored, so restored buffers overwrite what it sets
        # The data loader yields only step indices, so resuming mid-"epoch" loses nothing.
        warnings.filterwarnings("ignore", message=".*resuming from a checkpoint that ended before the epoch ended.*")

    def on_fit_start(self) -> None:
        if self.trainer.max_steps is None or self.trainer.max_steps < 0:
            raise ValueError("set the number of optimization steps with Trainer(max_steps=N)")

    def train_dataloader(self) -> DataLoader:
        # The input lives in the module; the "data" is just the step index. Its length makes the progress
        # bar show steps done out of max_steps.
        return DataLoader(range(self.trainer.max_steps), batch_size=None)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory([self.input])

    def compute_loss(self, x: Tensor, rows: Tensor | None = None) -> dict[str, Tensor]:
        """Per-image terms for input ``x``: ``objective``, each prior (unweighted), and ``loss``.

        Args:
            x: the full input ``(B, C, H, W)``.
            rows: score only these rows of ``x`` (each with its own target); the terms then have
                ``len(rows)`` entries. ``None``: every row.

        Example:
            >>> from inputopt.objectives import ChannelSum
            >>> module = InputOptimization("digits", ChannelSum("features.0", channel="all"), image_shape=(1, 32, 32))
            >>> module.input.shape[0], module.compute_loss(module.input, rows=torch.tensor([2, 3]))["loss"].shape
            (16, torch.Size([2]))
        """
        if rows is not None:
            with self.objective.rows(rows):
                return self._terms(x[rows], rows)
        return self._terms(x, None)

    def _terms(self, x: Tensor, rows: Tensor | None) -> dict[str, Tensor]:
        acts = self.activations(x)
        terms = {"objective": self.objective(acts)}
        loss = -terms["objective"]
        for name, prior in zip(self.prior_names, self.priors):
            terms[name] = prior(x)
            loss = loss + prior.weight * terms[name]
        terms["loss"] = loss
        if self.freeze_done:
            done = self.objective.is_done(acts)
            if done is not None:
                self._update_done(done.detach(), rows)
                own = self.done if rows is None else self.done[rows]
                terms["loss"] = torch.where(own, torch.zeros_like(loss), loss)
        return terms

    def _update_done(self, done: Tensor, rows: Tensor | None) -> None:
        if rows is None:
            self.done |= done
            return
        flags = torch.zeros_like(self.done, dtype=torch.float32)
        flags[rows] = done.float()
        if self._world_size() > 1:  # every process freezes the same rows, so their inputs stay identical
            flags = self.trainer.strategy.reduce(flags, reduce_op="sum")
        self.done |= flags > 0

    def _world_size(self) -> int:
        trainer = self._trainer
        return trainer.world_size if trainer is not None else 1

    def shard_rows(self, rank: int | None = None, world_size: int | None = None) -> Tensor:
        """The rows this process scores in a multi-device run: a contiguous block of the batch.

        Every process holds the whole input; process ``r`` of ``N`` computes the loss of block ``r`` of
        ``torch.arange(B).tensor_split(N)`` only. See :meth:`training_step`.

        Example:
            >>> from inputopt.objectives import UnitActivation
            >>> module = InputOptimization("digits", UnitActivation(None, unit="all"), image_shape=(1, 32, 32))
            >>> [module.shard_rows(r, 3).tolist() for r in range(3)]
            [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
        """
        rank = self.global_rank if rank is None else rank
        world_size = self._world_size() if world_size is None else world_size
        return torch.arange(self.input.shape[0], device=self.input.device).tensor_split(world_size)[rank]

    def training_step(self, batch: int, batch_idx: int) -> Tensor:
        """One step on every image; with ``N > 1`` processes, each scores only its own rows.

        Every process holds the whole input and the same optimizer state. Process ``r`` computes the loss
        of its block of rows (:meth:`shard_rows`) and returns ``N ×`` its sum: the input's gradient is zero
        outside that block, DistributedDataParallel averages the gradients of the ``N`` processes, so every
        row receives exactly its owner's gradient, every process applies the same update, and the result
        equals a one-process run (to float rounding) whatever ``N``.
        """
        world_size = self._world_size()
        rows = self.shard_rows() if world_size > 1 else None
        terms = self.compute_loss(self.input, rows)
        batch_size = terms["loss"].shape[0]
        sync = world_size > 1
        for name, value in terms.items():
            key = name if name in ("objective", "loss") else f"prior/{name}"
            mean = value.detach().mean() if batch_size else value.detach().sum()
            self.log(key, mean, on_step=True, prog_bar=name in ("objective", "loss"), batch_size=batch_size,
                     sync_dist=sync)
        if self.log_per_image:
            names = self.image_names()
            own = names if rows is None else [names[i] for i in rows.tolist()]
            for name in ("objective", "loss"):
                for row, value in zip(own, terms[name].detach()):
                    self.log(f"{name}/{row}", value, on_step=True, batch_size=1)
        if self.freeze_done:
            self.log("done", self.done.float().mean(), on_step=True, prog_bar=True, batch_size=self.input.shape[0])
        return terms["loss"].sum() * world_size

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None) -> None:
        before = self.input.detach().clone() if self.freeze_done else None
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        with torch.no_grad():
            if before is not None:  # optimizers with momentum still move rows whose gradient is zero
                self.input[self.done] = before[self.done]
            if self.clamp is not None:
                self.input.clamp_(*self.clamp)
