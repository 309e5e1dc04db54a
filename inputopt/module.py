"""The LightningModule whose single trainable thing is the input, held by an image parameterization."""

from __future__ import annotations

import hashlib
import logging
import warnings
from collections.abc import Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule
from lightning.pytorch.cli import OptimizerCallable
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor, nn
from torch.utils.data import DataLoader

from inputopt._notices import quiet_data_loaders
from inputopt.engine import NonFiniteError, StepEngine, check_precision
from inputopt.functional.random import RowRandom
from inputopt.loss import _distinct
from inputopt.networks import FrozenNetworkHolder, _expected_input, class_names, default_image_shape, load_torch_file
from inputopt.objectives.base import Targets, map_targets
from inputopt.problem import Problem

__all__ = ["FINGERPRINT_FIELDS", "InputOptimization", "TRAINER_FINGERPRINT_FIELDS", "check_max_steps", "check_one_process",
           "trainer_numerics"]

#: What defines a run's result: stored in its checkpoints and compared when a fit resumes from one.
FINGERPRINT_FIELDS = ("network", "network_weights", "normalization", "objective", "priors", "param", "transforms",
                      "image_shape", "init", "seed", "freeze_done", "optimizer", "precision", "gradient_clip",
                      "accumulate_grad_batches")

#: The Trainer's settings that change the images of a fit (its numerics), in :data:`FINGERPRINT_FIELDS`.
TRAINER_FINGERPRINT_FIELDS = ("precision", "gradient_clip", "accumulate_grad_batches")


def trainer_numerics(trainer) -> dict[str, str]:
    """The Trainer's settings that change a fit's images, one string per field of
    :data:`TRAINER_FINGERPRINT_FIELDS`: the precision, the gradient clipping (value and algorithm) and the
    gradient accumulation. ``"None"`` for each without a Trainer.

    Example:
        >>> from lightning.pytorch import Trainer
        >>> trainer_numerics(Trainer(logger=False, precision="bf16-mixed", gradient_clip_val=0.5))
        {'precision': 'bf16-mixed', 'gradient_clip': '0.5 (norm)', 'accumulate_grad_batches': '1'}
    """
    if trainer is None:
        return dict.fromkeys(TRAINER_FINGERPRINT_FIELDS, "None")
    value, algorithm = trainer.gradient_clip_val, trainer.gradient_clip_algorithm
    algorithm = getattr(algorithm, "value", algorithm) or "norm"  # Lightning's GradClipAlgorithmType, or None
    clip = "None" if value is None or value == 0 else f"{float(value)} ({algorithm})"
    return {"precision": str(trainer.precision), "gradient_clip": clip,
            "accumulate_grad_batches": str(trainer.accumulate_grad_batches)}


def _tensor_hash(tensors: Iterable[tuple[str, Tensor]]) -> str:
    """A short SHA-256 of named tensors (names, dtypes, shapes and values)."""
    digest = hashlib.sha256()
    for name, tensor in tensors:
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()[:16]


def _float_images(images: Tensor, what: str) -> Tensor:
    """Float images: uint8 is scaled by 1/255 like an image file; other integer or bool tensors are refused."""
    if images.dtype == torch.uint8:
        return images.float().div(255)
    if not images.is_floating_point():
        raise ValueError(f"{what} holds a {images.dtype} tensor; give float images in [0, 1], or uint8 (0..255, "
                         f"scaled by 1/255 like an image file)")
    return images.float()


def _load_images(init: Tensor | str | Path, channels: int | None = None) -> Tensor:
    """The starting images of ``init``: a tensor, a ``.pt`` file holding one, or an image file read in [0, 1]
    as 1 channel (grayscale) when ``channels`` is 1, else RGB; with ``channels`` unknown, as stored."""
    if isinstance(init, Tensor):
        return _float_images(init.detach(), "init")
    if isinstance(init, str) and init.startswith("photo:"):  # a packaged photo (inputopt.data.photos)
        from inputopt.data.photos import photo

        return photo(init[len("photo:"):])
    if isinstance(init, str) and init.startswith("digits:"):  # held-out digits of the zoo, by index
        from inputopt.zoo.digits import load_digits_split

        images = load_digits_split("test")[0]
        try:
            index = [int(i) for i in init[len("digits:"):].split(",")]
            return images[index]
        except (ValueError, IndexError) as error:
            raise ValueError(f"init {init!r} must be 'digits:' and indices in [0, {len(images)}) separated by "
                             f"commas, e.g. 'digits:3' or 'digits:3,17'") from error
    path = Path(init).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"init file {str(path)!r} does not exist")
    if path.suffix in (".pt", ".pth"):
        images = load_torch_file(path, "init file")
        if not isinstance(images, Tensor):
            raise ValueError(f"init file {str(path)!r} must hold a tensor of images (B, C, H, W) or (C, H, W), "
                             f"got a {type(images).__name__}")
        return _float_images(images, f"init file {str(path)!r}")
    from PIL import Image, UnidentifiedImageError
    from torchvision.transforms.functional import pil_to_tensor

    try:
        with Image.open(path) as image:
            gray = channels == 1 or (channels is None and image.mode in ("1", "L", "I", "I;16", "F"))
            image = image.convert("L" if gray else "RGB")
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"cannot read init file {str(path)!r} as an image (corrupt, truncated or not an "
                         f"image): {error}") from error
    return pil_to_tensor(image).float().div(255)


#: The largest side of an init image file taken at its own size (no image_shape configured, a network given as
#: a module): beyond it the file is refused, never silently made a run of millions of values.
MAX_INIT_FILE_SIDE = 1024


def _fit_init_file(images: Tensor, init, image_shape) -> Tensor:
    """An init image *file* (not a tensor or a ``.pt`` file, whose size is the user's) at the run's size: resized
    (bilinear, antialiased) to the configured ``image_shape`` (given, or the named network's own), or, with
    none, refused when larger than :data:`MAX_INIT_FILE_SIDE` on a side."""
    if isinstance(init, Tensor) or Path(str(init)).suffix in (".pt", ".pth"):
        return images
    height, width = images.shape[-2:]
    if image_shape is None:
        if max(height, width) > MAX_INIT_FILE_SIDE:
            raise ValueError(f"init image {str(init)!r} is {width}x{height} pixels, more than {MAX_INIT_FILE_SIDE} on "
                             f"a side, and no image_shape says the run's size: give image_shape (C, H, W) to resize "
                             f"it to, e.g. --model.image_shape '[{images.shape[-3]}, 224, 224]'")
        return images
    size = tuple(image_shape[1:])
    if (height, width) == size:
        return images
    batched = images if images.ndim == 4 else images.unsqueeze(0)
    resized = torch.nn.functional.interpolate(batched, size=size, mode="bilinear", antialias=True,
                                              align_corners=False).clamp(0, 1)
    rank_zero_info(f"inputopt: init image {str(init)!r} resized from {width}x{height} to the run's {size[1]}x{size[0]} "
                   f"(image_shape)")
    return resized if images.ndim == 4 else resized[0]


def _problem(problem: Problem | Mapping[str, Any]) -> Problem:
    """The problem of a fit: ``problem`` itself, or the one its config (a checkpoint's hyperparameters) describes;
    a config whose network was a module says to give the problem again."""
    try:
        return Problem.of(problem)
    except ValueError as error:
        if "was a module" not in str(error):
            raise
        raise ValueError(f"{error}; for a checkpoint: InputOptimization.load_from_checkpoint(path, problem=problem), "
                         f"with the same problem (its module) as the fit") from None


#: ``Trainer(log_every_n_steps=...)``'s default, which :class:`InputOptimization` replaces with 1.
LIGHTNING_LOG_EVERY_N_STEPS = 50


class _OwnCallbacksNotice(logging.Filter):
    """Drops Lightning's notice that :meth:`InputOptimization.configure_callbacks` replaces the Trainer's model
    summary and progress bar: that replacement is the point, and the notice came with every fit."""

    NOTICE = "The following callbacks returned in `LightningModule.configure_callbacks` will override"
    OWN = {"ModelSummary", "TQDMProgressBar", "RichModelSummary", "RichProgressBar"}

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith(self.NOTICE) and set(message.rsplit(":", 1)[-1].replace(" ", "").split(","))
                    <= self.OWN)


logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_OwnCallbacksNotice())


def check_one_process(trainer) -> None:
    """Refuse a Trainer that runs several processes: :class:`InputOptimization` optimizes its images on one
    device. ``inputopt fit`` calls it before Lightning launches the other processes.

    Example:
        >>> from lightning.pytorch import Trainer
        >>> check_one_process(Trainer(accelerator="cpu", devices=1, logger=False))
    """
    world_size = trainer.world_size
    if world_size > 1:
        raise ValueError(
            f"InputOptimization optimizes its images on one device, but this Trainer runs {world_size} "
            f"processes. For many units on several devices, use `inputopt sweep` (the same arguments as "
            f"`inputopt fit`, plus --units_per_batch) or inputopt.runners.sweep.FeatureSweep with Trainer.test: each "
            f"process optimizes its own chunks of units. For a few images, use one device (--trainer.devices 1).")


def check_max_steps(trainer) -> None:
    """Refuse a Trainer without a number of optimization steps (``max_steps`` unset, 0 or negative)."""
    max_steps = trainer.max_steps
    if max_steps is None or max_steps < 1:
        raise ValueError(f"max_steps must be an int >= 1, the number of optimization steps (Trainer(max_steps=N), "
                         f"--trainer.max_steps N), got {max_steps!r}")


class InputOptimization(FrozenNetworkHolder, LightningModule):
    """Optimize the input of a frozen network: ``loss = Σ_i [Σ_p w_p·h_p(x_i) − f_i(T(x_i))]``.

    The images ``x = param()`` of shape ``(B, C, H, W)`` come from an image parameterization
    (:class:`~inputopt.params.PixelImage` by default, :class:`~inputopt.params.FourierImage`, ...), whose
    tensor is the module's only trainable parameter and is projected after every step
    (:meth:`ImageParam.project_`). The objective scores the images after the random robustness
    ``transforms`` ``T`` (loss forward only); the priors penalize the images themselves. Everything that
    reports or checks (results, TensorBoard, :meth:`predict_classes`, callbacks) sees the images, never
    the raw tensor, and no transform. The loss path is :class:`~inputopt.loss.LossPath`.

    The network is frozen, kept in eval mode whatever mode Lightning sets (BatchNorm statistics and
    Dropout untouched), and is neither in the optimizer nor in checkpoints: it is held outside the module
    tree and rebuilt from the hyperparameters. Devices, precision, logging, checkpoints and progress bars
    come from the ``Trainer``; the number of steps is ``Trainer(max_steps=...)``. The scalars (objective,
    loss, priors) are logged at every step: a Trainer left at Lightning's ``log_every_n_steps=50``, which
    logs nothing in a run shorter than that, is set to 1 when the fit starts (any other value is kept, as the
    ``inputopt`` command's own default of 1 is). The progress bar counts steps out of ``max_steps``
    (:class:`~inputopt.callbacks.progress.StepProgressBar`).

    Args:
        problem: what to optimize, described once (:class:`~inputopt.problem.Problem`): the network, objective,
            priors, image parameterization (default ``PixelImage()``: pixels from ``N(0, 0.01²)``), robustness
            transforms and seed (image ``i``'s starting tensor and random transforms depend only on
            ``(seed, unit_i)`` and the step); or its plain-data config (:meth:`Problem.config`, a checkpoint's
            hyperparameters). The problem needs an objective. The checkpoints keep ``problem.config()``; a network
            given as a module cannot be rebuilt from it: pass the same problem again,
            ``InputOptimization.load_from_checkpoint(path, problem=problem)``. One problem serves several runs
            (each takes its own copy of the parameterization).
        image_shape: ``(C, H, W)`` of the images (default: ``init``'s, else the named network's own input,
            :func:`~inputopt.networks.default_image_shape`: 1×32×32 for the zoo, 3×224×224 for ``vgg16``).
        batch_size: number of images when neither the objective (one image per unit) nor ``init`` says.
        init: starting images instead of noise: a ``(B, C, H, W)`` or ``(C, H, W)`` tensor, or the path
            of a ``.pt`` tensor or an image file (read in [0, 1]), or ``"photo:NAME"``, a photo of
            :mod:`inputopt.data.photos` (``"photo:chelsea"``, 3×224×224), or ``"digits:I,J,..."``, held-out
            digits of the zoo's test split by index (``"digits:3"``, 1×32×32). A path is saved in the hyperparameters;
            a tensor is not (pass it again to ``load_from_checkpoint``, like a network given as a module).
        optimizer: a callable that builds the optimizer from the parameters, e.g.
            ``functools.partial(torch.optim.SGD, lr=0.1)``; ``None`` is Adam with lr 0.1.
        freeze_done: stop updating an image once the objective says it is done (e.g. its label flipped),
            so that its perturbation stays as small as the run allows.
        log_per_image: also log every image's objective and loss as ``objective/<name>`` and
            ``loss/<name>``, named like the result files (the means over images are always logged).
        allow_resume_mismatch: fields of the configuration fingerprint (:data:`FINGERPRINT_FIELDS`) that may
            differ from the checkpoint a fit resumes from, e.g. ``["optimizer"]`` to continue with another
            learning rate. Any other difference is refused, naming the fields.

    Example:
        >>> from lightning.pytorch import Trainer
        >>> from inputopt.objectives import UnitActivation
        >>> from inputopt.params import FourierImage
        >>> from inputopt.priors import MultiScaleEdgeEnergy
        >>> problem = Problem("digits", UnitActivation(None, unit=[3, 8]), [MultiScaleEdgeEnergy(weight=0.1)],
        ...                   param=FourierImage(mean=0.5))
        >>> module = InputOptimization(problem, image_shape=(1, 32, 32))
        >>> trainer = Trainer(max_steps=5, logger=False, enable_checkpointing=False,
        ...                   enable_progress_bar=False, enable_model_summary=False)
        >>> trainer.fit(module)
        >>> module.images().shape
        torch.Size([2, 1, 32, 32])
    """

    def __init__(
        self,
        problem: Problem,
        image_shape: Sequence[int] | None = None,
        batch_size: int | None = None,
        init: Tensor | str | None = None,
        optimizer: OptimizerCallable | None = None,
        freeze_done: bool = False,
        log_per_image: bool = False,
        allow_resume_mismatch: Sequence[str] = (),
    ) -> None:
        super().__init__()
        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                       or batch_size < 1):
            raise ValueError(f"batch_size must be an int >= 1 or None, got {batch_size!r}")
        if optimizer is not None and not callable(optimizer):
            raise TypeError(f"optimizer must build the optimizer from the parameters (e.g. "
                            f"functools.partial(torch.optim.SGD, lr=0.1)), got {optimizer!r}")
        problem = _problem(problem)
        objective = problem.require(runner="InputOptimization")
        ignore = ["problem"] + (["init"] if not isinstance(init, (str, type(None))) else [])
        self.save_hyperparameters(ignore=ignore)
        # Checkpoints (and a logger's hparams.yaml) keep the problem as plain data ({"class_path", "init_args"}
        # components, loadable with weights_only=True) and rebuild it from that (Problem.of).
        self.save_hyperparameters({"problem": problem.config(), **self.hparams})

        self.problem = problem
        object.__setattr__(self, "_network", problem.network)  # outside the module tree: not trained, saved or mode-switched
        self.network_name = problem.network_name
        self.objective = objective
        self.priors = nn.ModuleList(problem.priors)
        self.transforms = problem.transforms
        self.normalize = problem.normalize
        self.path = problem.path()
        self.optimizer_factory = optimizer if optimizer is not None else partial(torch.optim.Adam, lr=0.1)
        # a bad learning rate refused now, before a Trainer's logger writes anything for this run
        _check_learning_rate(self.optimizer_factory([torch.zeros(1, requires_grad=True)]))
        self.freeze_done = freeze_done
        self.log_per_image = log_per_image
        self.seed = problem.seed
        unknown = sorted(set(allow_resume_mismatch) - set(FINGERPRINT_FIELDS))
        if isinstance(allow_resume_mismatch, str) or unknown:
            raise ValueError(f"allow_resume_mismatch must be a list of fingerprint fields {list(FINGERPRINT_FIELDS)}, "
                             f"got {allow_resume_mismatch!r}")
        self.allow_resume_mismatch = list(allow_resume_mismatch)
        self._weights_hash: str | None = None

        self.param = problem.new_param()
        self._param_config = self.param.config()
        self._initialize_param(image_shape, batch_size, init, self.seed)
        self.row_seeds = RowRandom(self.seed).stream("start").seeds(self.row_keys)  # each row's randomness: (seed, unit) only
        self.register_buffer("done", torch.zeros(self.param.batch_size, dtype=torch.bool))
        # the rows' targets, from the starting images through the shape probe: bad images, layers or units
        # fail here, before any run
        self.targets: Targets = self.objective.default_targets(self._probe(self.start))
        self._engine: StepEngine | None = None

    # -- construction helpers -------------------------------------------------------------------
    def _probe(self, images: Tensor) -> dict[str, Tensor]:
        """The shape probe: the evaluation forward of ``images`` up to the objective's layers, with an error
        that says what the network takes when it cannot take them."""
        return self.problem.probe(images, self.objective)

    def _resolve_objective(self, image_shape: Sequence[int]) -> None:
        """Let the objective fix shape-dependent targets (``units="all"``) with a one-image zero probe,
        which the capture stops at the objective's deepest layer."""
        if not self.objective.resolved:
            self.objective.resolve(self._probe(torch.zeros(1, *image_shape)))

    def _initialize_param(self, image_shape, batch_size, init, seed) -> None:
        given = image_shape is not None
        if not given and self.network_name is not None:
            image_shape = default_image_shape(self.network_name)
        if init is not None:
            images = _load_images(init, channels=image_shape[0] if image_shape else None)
            if not torch.isfinite(images).all():
                count = int((~torch.isfinite(images)).sum())
                raise ValueError(f"init has {count} non-finite values (NaN or Inf) of {images.numel()}")
            if images.ndim == 3:
                images = images.unsqueeze(0)
            if images.ndim != 4:
                raise ValueError(f"init must be images of shape (B, C, H, W) or (C, H, W), got shape "
                                 f"{tuple(images.shape)}")
            if images.shape[0] == 0:
                raise ValueError(f"init holds no images (shape {tuple(images.shape)}): give at least one image, or "
                                 f"leave init out to start from noise")
            images = _fit_init_file(images, init, image_shape)
            if given and tuple(images.shape[1:]) != tuple(image_shape):
                raise ValueError(f"image_shape is {tuple(image_shape)} but init's images have shape "
                                 f"{tuple(images.shape[1:])}; leave image_shape out (init sets it) or make them agree")
            self._resolve_objective(images.shape[1:])
            rows = self.objective.num_rows
            if rows is not None and images.shape[0] != rows:
                raise ValueError(f"the objective targets {rows} units, one per image, but init has "
                                 f"{images.shape[0]} images")
            self.row_keys = self._row_keys(images.shape[0])
            self._init_hash = _tensor_hash([("init", images)])
            self.param.initialize_from(images)
            return
        if image_shape is None:
            raise ValueError(f"image_shape (C, H, W) is needed for a network given as a module "
                             f"({_expected_input(self.network, None)})")
        if len(image_shape) != 3 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0
                                            for s in image_shape):
            raise ValueError(f"image_shape must be (C, H, W) positive ints, got {tuple(image_shape)}")
        self._resolve_objective(image_shape)
        rows = self.objective.num_rows
        if rows is not None and batch_size is not None and batch_size != rows:
            raise ValueError(f"batch_size={batch_size} but the objective targets {rows} units, one per image")
        self._init_hash = None
        self.row_keys = self._row_keys(rows or batch_size or 1)
        self.param.initialize(tuple(image_shape), self.row_keys, seed)

    def _row_keys(self, batch_size: int) -> list[int]:
        """What each row targets (its unit), or its index for objectives without units."""
        keys = self.objective.row_keys(batch_size)
        return list(range(batch_size)) if keys is None else keys

    # -- the network outside the module tree (FrozenNetworkHolder) moves with it, and so do the targets ----------
    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        self.targets = map_targets(fn, self.targets)
        self._engine = None  # it holds the tensors that moved
        return self

    # -- images and the evaluation forward --------------------------------------------------------
    @torch.no_grad()
    def images(self) -> Tensor:
        """The current images ``(B, C, H, W)``, a detached copy: what results, logs and checks show."""
        return self.param().detach().clone()

    @property
    def start(self) -> Tensor:
        """The starting images (the centre of an ε-ball, the reference of the random-sphere check)."""
        return self.param.start

    def activations(self, x: Tensor, layers: Iterable[str] | None = None) -> dict[str, Tensor]:
        """The evaluation forward: outputs of ``layers`` (default: the objective's) for images ``x``, no transforms."""
        return self.path.activations(x, layers)

    def forward(self, x: Tensor | None = None) -> Tensor:
        """The network's output for images ``x`` (default: the current images), normalization included."""
        return self.activations(self.images() if x is None else x, [""])[""]

    @torch.no_grad()
    def predict_classes(self, x: Tensor | None = None) -> Tensor:
        """The predicted class of each image of ``x`` (default: the current images)."""
        return self(x).argmax(1)

    def image_names(self) -> list[str]:
        """A name per image: ``<layer>-<unit>`` for objectives with units, else ``row-<i>``; for files and logs."""
        return _distinct(self.objective.row_names(self.param.batch_size), "-")

    @property
    def class_names(self) -> list[str] | None:
        """The network's class names, when known."""
        return class_names(self.network_name) if self.network_name else None

    def summary(self) -> str:
        """What :class:`~inputopt.callbacks.progress.InputSummary` prints when a fit starts.

        Example:
            >>> from inputopt.objectives import UnitActivation
            >>> module = InputOptimization(Problem("digits", UnitActivation(None, unit=[3, 8])))
            >>> print(module.summary())  # doctest: +NORMALIZE_WHITESPACE
            Optimized input: 2 images of shape (1, 32, 32), PixelImage: 2.0 K trainable values
            Network: digits (frozen, 89.6 K parameters, not optimized)
            Objective: UnitActivation(layer=None, unit=[3, 8], position=None)
            Priors: none
            Transforms: none
        """
        from lightning.pytorch.utilities.model_summary.model_summary import get_human_readable_count

        images = self.images()
        values = sum(p.numel() for p in self.param.parameters())
        weights = sum(p.numel() for p in self.network.parameters())
        name = self.network_name or type(self.network).__name__
        return "\n".join([
            f"Optimized input: {images.shape[0]} images of shape {tuple(images.shape[1:])}, "
            f"{type(self.param).__name__}: {get_human_readable_count(values)} trainable values",
            f"Network: {name} (frozen, {get_human_readable_count(weights)} parameters, not optimized)",
            f"Objective: {self.objective!r}",
            f"Priors: {', '.join(repr(p) for p in self.priors) or 'none'}",
            f"Transforms: {', '.join(repr(t) for t in self.transforms.transforms) or 'none'}",
        ])

    # -- Lightning hooks ----------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        check_precision(self.trainer)
        check_one_process(self.trainer)
        from inputopt.callbacks.checkpoints import use_atomic_checkpoints

        use_atomic_checkpoints(self.trainer)  # a checkpoint is written whole or not at all
        source = getattr(getattr(self.trainer, "fit_loop", None), "_data_source", None)
        if stage == "fit" and source is not None and source.instance is not None and source.instance is not self:
            raise ValueError(
                f"InputOptimization optimizes its own images and takes no data, but this fit was given "
                f"{type(source.instance).__name__} (train_dataloaders= or datamodule=), which it would ignore. For "
                f"one input trained over a data set (a universal perturbation, an adversarial patch), use "
                f"inputopt.runners.shared.SharedInputOptimization (`inputopt universal`); for one input per data "
                f"item, a dataset runner (inputopt.runners: AttackEvaluation, FeatureInversion).")
        # The network is outside the module tree, so Lightning's train()/eval() never reach it: put it back in
        # eval mode, without gradients, here, whatever the user did to it since construction; a user's module
        # gets its own modes and requires_grad flags back when the fit ends or fails.
        self._freeze_network()
        # The data loader yields only step indices, so resuming mid-"epoch" loses nothing.
        warnings.filterwarnings("ignore", message=".*resuming from a checkpoint that ended before the epoch ended.*")
        quiet_data_loaders()  # Lightning's wrapper of this module's loader warns about torch internals

    def configure_callbacks(self) -> list:
        """Lightning's model summary and progress bar, when on, replaced by
        :class:`~inputopt.callbacks.progress.InputSummary` (which calls the optimized pixels images, not "params") and
        :class:`~inputopt.callbacks.progress.StepProgressBar` (steps done out of ``max_steps``, not "Epoch 0"); and a
        callback that gives the network its user's train/eval modes back when a fit fails (Lightning calls
        no module hook then)."""
        from lightning.pytorch.callbacks import ModelSummary, RichModelSummary, RichProgressBar, TQDMProgressBar

        from inputopt.callbacks.progress import InputSummary, StepProgressBar

        callbacks: list = [_GiveBackNetworkModes()]
        summary = next((c for c in self.trainer.callbacks if type(c) in (ModelSummary, RichModelSummary)), None)
        if summary is not None:
            callbacks.append(InputSummary(max_depth=summary._max_depth))
        bar = self.trainer.progress_bar_callback
        if type(bar) is TQDMProgressBar:
            callbacks.append(StepProgressBar(bar.refresh_rate, bar.process_position))
        elif type(bar) is RichProgressBar:  # its refresh rate is per second, not per step
            callbacks.append(StepProgressBar())
        # Lightning's defaults are the Rich ones when rich is installed; Lightning replaces a Trainer callback
        # only by one of its own class or a subclass, so those two are taken out here
        rich = [c for c in (summary, bar) if type(c) in (RichModelSummary, RichProgressBar)]
        if rich:
            self.trainer.callbacks = [c for c in self.trainer.callbacks if not any(c is r for r in rich)]
        return callbacks

    def on_fit_start(self) -> None:
        check_max_steps(self.trainer)
        if self.trainer.log_every_n_steps == LIGHTNING_LOG_EVERY_N_STEPS:
            self.trainer.log_every_n_steps = 1  # a run is a few hundred steps: the curve of every step is cheap

    def on_fit_end(self) -> None:
        self._give_back_network()

    # -- checkpoints: finite, and only resumed by the same configuration ---------------------------
    def fingerprint(self) -> dict[str, str]:
        """What defines the result of this run, one string per field of :data:`FINGERPRINT_FIELDS`; stored in
        every checkpoint and compared when a fit resumes from one.

        Example:
            >>> from inputopt.objectives import UnitActivation
            >>> module = InputOptimization(Problem("digits", UnitActivation(None, unit=[3, 8])),
            ...                            image_shape=(1, 32, 32))
            >>> module.fingerprint()["objective"]
            "{'class_path': 'inputopt.objectives.activation.UnitActivation', 'init_args': {'layer': None, 'unit': [3, 8], 'position': None}}"
        """
        if self._weights_hash is None:  # the network never changes: hash its weights once
            net = self._network
            self._weights_hash = _tensor_hash([*net.state_dict().items()])
        net, spec, problem = self._network, self.problem.spec, self.hparams["problem"]
        normalization = None if self.normalize is None else _tensor_hash(self.normalize.state_dict().items())
        optimizer = self.optimizer_factory([nn.Parameter(torch.zeros(1))])
        settings = {k: v for k, v in optimizer.defaults.items() if k not in ("foreach", "fused", "capturable", "differentiable")}
        return {
            "network": (self.network_name or f"{type(net).__module__}.{type(net).__qualname__}")
            + "".join(f" {key}={value!r}" for key, value in (("layouts", spec.layouts), ("output", spec.output))
                      if value not in (None, {})),
            "network_weights": self._weights_hash,
            "normalization": str(normalization),
            "objective": str(problem["objective"]),
            "priors": str(problem["priors"]),
            "param": str(self._param_config),
            "transforms": str(problem["transforms"]),
            "image_shape": str(tuple(self.start.shape)),
            "init": str(self._init_hash),
            "seed": str(self.seed),
            "freeze_done": str(self.freeze_done),
            "optimizer": f"{type(optimizer).__module__}.{type(optimizer).__qualname__}({settings})",
            **trainer_numerics(self._trainer),
        }

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        tensors = list(checkpoint["state_dict"].items())
        for i, state in enumerate(checkpoint.get("optimizer_states", [])):
            tensors += [(f"optimizer {i} state {key}.{name}", value) for key, values in state.get("state", {}).items()
                        for name, value in values.items() if isinstance(value, Tensor)]
        bad = [name for name, value in tensors if value.is_floating_point() and not torch.isfinite(value).all()]
        if bad:
            raise NonFiniteError(f"refusing to write a checkpoint with non-finite values in {', '.join(bad)}")
        checkpoint["inputopt_fingerprint"] = self.fingerprint()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        saved = checkpoint.get("inputopt_fingerprint")
        if self._trainer is None:  # load_from_checkpoint rebuilds the module from the checkpoint
            return
        if saved is None:
            raise ValueError(
                "refusing to resume from a checkpoint without an inputopt fingerprint (written by another program, "
                "or edited): what defines its images cannot be compared with this run's configuration. Start a new "
                "run, or give its images as the starting point (init) of one.")
        now = self.fingerprint()
        differ = [f for f in FINGERPRINT_FIELDS if saved.get(f) != now.get(f) and f not in self.allow_resume_mismatch]
        if differ:
            def short(text):
                return text if text is None or len(text) <= 160 else text[:157] + "..."
            lines = "\n".join(f"  {f}: checkpoint {short(saved.get(f))}, now {short(now.get(f))}" for f in differ)
            raise ValueError(
                f"refusing to resume: this run's configuration differs from the checkpoint's in {', '.join(differ)}:\n"
                f"{lines}\nResume with the checkpoint's configuration, start a new run in another folder (e.g. "
                f"--trainer.logger.init_args.version), or allow the difference with allow_resume_mismatch="
                f"{differ} (--model.allow_resume_mismatch '{differ}').")

    def train_dataloader(self) -> DataLoader:
        # The images live in the module; the "data" is just the step index. Its length makes the progress
        # bar show steps done out of max_steps.
        return DataLoader(range(self.trainer.max_steps), batch_size=None)

    def compute_loss(self, images: Tensor, step: int = 0) -> dict[str, Tensor]:
        """Per-image terms for ``images``: ``objective``, each prior (unweighted), and ``loss``.

        Args:
            images: all ``B`` images, e.g. ``self.param()``.
            step: the step number that seeds the transforms.

        Example:
            >>> from inputopt.objectives import ChannelSum
            >>> module = InputOptimization(Problem("digits", ChannelSum("features.0", channel="all")),
            ...                            image_shape=(1, 32, 32))
            >>> module.images().shape[0], module.compute_loss(module.param())["loss"].shape
            (16, torch.Size([16]))
        """
        terms = self.engine().terms(step, images)
        terms.pop("done", None)
        return terms

    def engine(self) -> StepEngine:
        """The step engine of this run: its loss forward, finiteness checks, done rows, update and run record
        (:class:`~inputopt.engine.StepEngine`). Built once on the module's tensors, and again after they move
        to another device."""
        if self._engine is None:
            self._engine = StepEngine(self.param, self.path, self.targets, self.row_seeds,
                                      freeze_done=self.freeze_done, done=self.done,
                                      reference=self.start if self.path.centred else None)
        return self._engine

    def training_step(self, batch: int, batch_idx: int) -> Tensor:
        """One step on every image: the sum of the images' losses (rows do not interact)."""
        if any(m.training for m in self._network.modules()):
            rank_zero_warn("the network was switched to train mode during the fit; putting it back in eval mode")
            self._network.eval()
        images = self.param()
        terms = self.compute_loss(images, step=self.global_step)
        self.engine().check_loss(terms, self.global_step)  # the images are finite: checked after every step
        batch_size = terms["loss"].shape[0]
        for name, value in terms.items():
            key = name if name in ("objective", "loss") else f"prior/{name}"
            self.log(key, value.detach().mean(), on_step=True, prog_bar=name in ("objective", "loss"),
                     batch_size=batch_size)
        if self.log_per_image:
            for name in ("objective", "loss"):
                for row, value in zip(self.image_names(), terms[name].detach()):
                    self.log(f"{name}/{row}", value, on_step=True, batch_size=1)
        if self.freeze_done:
            self.log("done", self.done.float().mean(), on_step=True, prog_bar=True, batch_size=self.param.batch_size)
        return terms["loss"].sum()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return _check_learning_rate(self.optimizer_factory(list(self.param.parameters())))

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None) -> None:
        """Lightning's optimizer step (whose closure runs :meth:`training_step` and the backward) inside the step
        engine's update: done rows restored, projection, and the last finite images kept on a non-finite one."""
        step = partial(super().optimizer_step, epoch, batch_idx, optimizer, optimizer_closure)
        self.engine().update(step, self.global_step)


def _check_learning_rate(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """Refuse an optimizer whose learning rate is not a finite number > 0 (0 would return the starting noise as
    results; a negative one minimizes what the objective maximizes)."""
    for group in optimizer.param_groups:
        lr = group.get("lr")
        value = None if lr is None else torch.as_tensor(lr, dtype=torch.float64)
        if value is not None and not (torch.isfinite(value).all() and (value > 0).all()):
            raise ValueError(f"the optimizer's learning rate must be a finite number > 0, got {lr!r}")
    return optimizer


class _GiveBackNetworkModes(Callback):
    """Gives the network of an :class:`InputOptimization` its user's train/eval modes back when a fit fails."""

    def on_exception(self, trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if isinstance(pl_module, InputOptimization):
            pl_module._give_back_network()
