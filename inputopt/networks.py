"""Networks by name: torchvision classifiers with their weights enums, local files, the project's zoo."""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.error import URLError

import torch
from torch import Tensor, nn

from inputopt.capture import evaluate
from inputopt.layouts import Layout, declare_layouts

__all__ = ["IMAGENET_ZOO", "TIMM_PREFIX", "FrozenNetworkHolder", "NetworkSpec", "WeightsUnavailableError", "state_hash", "build_network",
           "class_names", "default_image_shape", "default_normalization", "freeze", "frozen", "hf_cache_dir",
           "frozen_network", "load_state_dict_file", "load_torch_file", "probe", "Normalize", "ZOO"]

#: The project's own small trained models, available offline (see ``inputopt/zoo``).
ZOO = {"digits": "a", "digits_b": "b", "digits_vit": "vit"}

#: The prefix of a timm model's name: ``"timm/vit_tiny_patch16_224"``.
TIMM_PREFIX = "timm/"

#: Real pretrained ImageNet classifiers that install offline with the ``imagenet`` extra
#: (:mod:`inputopt.zoo.efficientnet`); they take [0, 1] RGB images, the ImageNet normalization built in.
IMAGENET_ZOO = ("efficientnet_lite0", "efficientnet_lite1")


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights could not be downloaded and are not in the local cache."""


def freeze(network: nn.Module) -> nn.Module:
    """Put ``network`` in eval mode and turn off gradients for all its parameters; returns it."""
    network.eval()
    network.requires_grad_(False)
    return network


@contextlib.contextmanager
def frozen(network: nn.Module) -> Iterator[nn.Module]:
    """``network`` in eval mode with no parameter gradients while the block runs; every submodule's mode and
    every parameter's ``requires_grad`` are put back as they were after it, however it ends. The one place
    where a run freezes a network it was given: the user's module is handed back as it was given.

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 2), nn.Dropout()).train()
        >>> with frozen(net):
        ...     net.training, net[0].weight.requires_grad
        (False, False)
        >>> net.training, net[0].weight.requires_grad
        (True, True)
    """
    modes = {module: module.training for module in network.modules()}
    flags = {parameter: parameter.requires_grad for parameter in network.parameters()}
    network.eval()
    network.requires_grad_(False)
    try:
        yield network
    finally:
        for module, mode in modes.items():
            module.training = mode
        for parameter, flag in flags.items():
            parameter.requires_grad_(flag)


@contextlib.contextmanager
def channels_last_on_cpu(network: nn.Module, probe: Tensor) -> Iterator[bool]:
    """A CNN on a CPU in the channels-last memory format while the block runs: its 4-D parameters (the convolutions'
    weights) are given channels-last copies of themselves and their own tensors back after, however the block ends;
    yields whether it did. The same function, computed by the faster kernels of that format (on the digits CNN a
    forward and backward pass took about 0.7× the CPU time, whole attacks about 0.6×; see the docs' "Speed on
    CPU"). Attacks run in it (:meth:`~inputopt.attacks.base.Attack.run`).

    Nothing changes on another device, for a network with fewer than two 4-D parameters (no convolutions, or a
    transformer's patch embedding alone: no faster on the digits ViT), or for a network whose forward fails in that
    format on ``probe`` (one input; e.g. a ``.view`` of a feature map, which needs contiguous strides).

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3))
        >>> with channels_last_on_cpu(net, torch.zeros(1, 3, 8, 8)) as converted:
        ...     converted, net[0].weight.is_contiguous(memory_format=torch.channels_last)
        (True, True)
        >>> net[0].weight.is_contiguous()
        True
    """
    parameters = [p for p in network.parameters() if p.ndim == 4 and p.device.type == "cpu"]
    originals = [p.data for p in parameters]

    def restore() -> None:
        for parameter, original in zip(parameters, originals):
            parameter.data = original

    converted = len(parameters) >= 2
    if converted:
        for parameter in parameters:
            parameter.data = parameter.data.to(memory_format=torch.channels_last)  # (contiguous() keeps a 1-channel weight)
        try:
            with torch.no_grad(), torch.random.fork_rng(devices=[]):  # a randomized network's draws stay as they were
                network(probe)
        except RuntimeError:  # the forward needs contiguous feature maps: the network runs as it was given
            restore()
            converted = False
        except BaseException:
            restore()
            raise
    try:
        yield converted
    finally:
        if converted:
            restore()


def _network_factory(path: str):
    """The ``nn.Module`` class or factory function a dotted network name names, checked before it is called.

    A network name can come from a checkpoint's plain-data hyperparameters: it goes through the one resolver of
    names read from data (:func:`inputopt._resolve.resolve`), which imports nothing outside the allowed packages
    and accepts only an ``nn.Module`` subclass or a function that builds one (torchvision's and timm's registered
    models; in the user's own packages, a function without required arguments).
    """
    from inputopt._resolve import resolve

    return resolve(path, "network")


def _torchvision_names() -> list[str]:
    import torchvision  # imported when a torchvision model is asked for: the zoo and the core start without it

    return sorted(torchvision.models.list_models(module=torchvision.models))


def _weights_file(weights_enum) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights_enum.url)


def load_torch_file(path: str | os.PathLike, what: str) -> object:
    """``torch.load`` (tensors only, on the CPU) with errors that name the file: ``what`` says which file it is.

    Example:
        >>> load_torch_file("missing.pt", "init file")
        Traceback (most recent call last):
        ...
        FileNotFoundError: init file 'missing.pt' does not exist
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle, zip and size errors alike: name the file
        raise ValueError(f"cannot read {what} {str(path)!r} (corrupt, truncated or not a torch.save file): "
                         f"{error}") from error


def build_network(name: str, weights: str | None = None, state_dict: str | os.PathLike | None = None) -> nn.Module:
    """Build a frozen network in eval mode.

    ``name`` is one of:

    - a zoo model of this project (``"digits"``, ``"digits_b"``, the transformer ``"digits_vit"``), trained
      weights included;
    - a pretrained ImageNet network of the ``imagenet`` extra (``"efficientnet_lite0"``,
      ``"efficientnet_lite1"``): weights included, [0, 1] RGB input (the normalization is its first step);
    - a torchvision classifier (``"vgg16"``, ``"alexnet"``, ...) with ``weights`` the name of a member
      of its weights enum (``"IMAGENET1K_V1"``, ``"DEFAULT"``) or ``None`` for random weights. Weights go
      through torchvision's own API: downloaded once when online, read from the torch hub cache after;
    - ``"timm/<name>"``: any timm model (``timm.list_models()``), random weights, or with
      ``weights="pretrained"`` its pretrained weights read from the local Hugging Face cache (never
      downloaded: a clear error names the cache and the offline alternative, ``state_dict``);
    - a dotted path ``"package.module.factory"`` to an ``nn.Module`` class or a function that builds one, called
      with no arguments: in torch, torchvision, timm, the library, or a package the user allowed
      (``allow_packages:``, ``INPUTOPT_ALLOW``; see :func:`inputopt._resolve.resolve`).

    ``state_dict`` is a local file saved with ``torch.save(model.state_dict(), path)``, loaded with
    ``weights_only=True`` into the architecture built with random weights (see
    :func:`load_state_dict_file`: ``{"state_dict": ...}`` wrappers and ``module.`` prefixes are accepted).

    Args:
        name: the network's name (see above).
        weights: the torchvision weights enum member's name, or ``None``.
        state_dict: path of a local state_dict file, or ``None``.

    Raises:
        ValueError: unknown name or weights; the message lists valid choices.
        WeightsUnavailableError: weights cannot be downloaded and are not cached; the message says
            which file to put where.
        ImportError: an EfficientNet-Lite without the ``imagenet`` extra; the message names the command
            that installs it.

    Example:
        >>> net = build_network("alexnet")  # random weights, no download
        >>> net.training, any(p.requires_grad for p in net.parameters())
        (False, False)
    """
    if weights is not None and state_dict is not None:
        raise ValueError("give weights (a torchvision weights name) or state_dict (a local file), not both")
    if name in ZOO:
        from inputopt.zoo.digits import digits_cnn

        if weights is not None:
            raise ValueError(f"zoo model {name!r} ships its weights; use state_dict for other weights")
        if ZOO[name] == "vit":
            from inputopt.zoo.vit import digits_vit

            network = digits_vit(pretrained=state_dict is None)
        else:
            network = digits_cnn(ZOO[name], pretrained=state_dict is None)
    elif name in IMAGENET_ZOO:
        from inputopt.zoo.efficientnet import efficientnet_lite

        if weights is not None:
            raise ValueError(f"{name!r} ships its weights (the imagenet extra); use state_dict for other weights")
        network = efficientnet_lite(name, pretrained=state_dict is None)
    elif name.startswith(TIMM_PREFIX):
        network = _timm_network(name[len(TIMM_PREFIX):], weights)
        if state_dict is not None:  # timm's own key layout, loaded by timm (safetensors or torch files)
            _timm_load(network, state_dict, name)
            return freeze(network)
    elif "." in name:
        network = _network_factory(name)()
        if not isinstance(network, nn.Module):
            raise ValueError(f"network {name!r} returned a {type(network).__name__}, not an nn.Module")
        if weights is not None:
            raise ValueError(f"weights={weights!r} only applies to torchvision models; use state_dict")
    else:
        network = _torchvision_network(name, None if state_dict is not None else weights)
    if state_dict is not None:
        load_state_dict_file(network, state_dict, name)
    return freeze(network)


def _unwrap_state_dict(state: object, path: str) -> dict:
    """The tensors of a checkpoint: ``{"state_dict": ...}`` (Lightning and many scripts) and ``{"model": ...}``
    wrappers unwrapped, the ``module.`` prefix of ``nn.DataParallel``/DDP removed."""
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not state or not all(isinstance(k, str) for k in state):
        got = "an empty dict" if isinstance(state, dict) and not state else \
            f"a tensor of shape {tuple(state.shape)}" if isinstance(state, torch.Tensor) else type(state).__name__
        raise ValueError(f"state_dict file {path!r} must hold a dict of tensors (model.state_dict(), possibly "
                         f"inside {{'state_dict': ...}}), got {got}")
    if all(key.startswith("module.") for key in state):
        state = {key[len("module."):]: value for key, value in state.items()}
    return state


def load_state_dict_file(network: nn.Module, path: str | os.PathLike, name: str = "the network") -> nn.Module:
    """Load a local checkpoint into ``network`` (strictly: every key must fit), returning it.

    The file is read with ``weights_only=True``. It may hold ``model.state_dict()`` itself, or wrapped as
    ``{"state_dict": ...}`` (a Lightning checkpoint of a module whose only weights are the network's) or
    ``{"model": ...}``; keys prefixed with ``module.`` (``nn.DataParallel``) are accepted, and so are keys
    prefixed with ``model.``, ``net.`` or ``network.`` (a Lightning module that holds the network as
    ``self.model``) when, without the prefix, they are exactly the network's keys. An
    EfficientNet-Lite also takes the layout of the reference code that its weights packages ship.

    Args:
        network: the architecture, built with random weights.
        path: the file.
        name: the network's name, for error messages.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a checkpoint, or its keys or shapes do not fit ``network``.

    Example:
        >>> import tempfile
        >>> net, path = nn.Linear(2, 1), Path(tempfile.mkdtemp()) / "wrapped.pt"
        >>> torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, path)
        >>> load_state_dict_file(nn.Linear(2, 1), path).weight.equal(net.weight)
        True
    """
    path = Path(path).expanduser()
    state = _unwrap_state_dict(load_torch_file(path, "state_dict file"), str(path))
    if name in IMAGENET_ZOO:
        from inputopt.zoo.efficientnet import convert_reference_state_dict

        state = convert_reference_state_dict(state, network)
    own = set(network.state_dict())
    for prefix in ("model.", "net.", "network."):  # a Lightning checkpoint of a module holding the network
        stripped = {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}
        if set(state) != own and len(stripped) == len(state) and set(stripped) == own:
            state = stripped
            break
    try:
        network.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(f"state_dict file {str(path)!r} does not fit network {name!r}: {error}") from error
    return network


def default_image_shape(name: str) -> tuple[int, int, int] | None:
    """The input shape ``(C, H, W)`` a named network was trained on, or ``None`` when unknown.

    Zoo models take 1×32×32 digits; torchvision classifiers the crop size of their default weights'
    preprocessing (3×224×224 for most, 3×299×299 for ``inception_v3``). Known offline.

    Example:
        >>> default_image_shape("digits"), default_image_shape("vgg16"), default_image_shape("inception_v3")
        ((1, 32, 32), (3, 224, 224), (3, 299, 299))
    """
    if name in ZOO:
        return (1, 32, 32)
    if name in IMAGENET_ZOO:
        return (3, 224, 224)
    if name.startswith(TIMM_PREFIX):
        config = _timm_config(name[len(TIMM_PREFIX):])
        return tuple(config.input_size) if config is not None and config.input_size else None
    if name in _torchvision_names():
        import torchvision

        try:
            height, width = (list(torchvision.models.get_model_weights(name).DEFAULT.transforms().crop_size) * 2)[:2]
        except (ValueError, KeyError, AttributeError, TypeError):
            return (3, 224, 224)
        return (3, height, width)
    return None


def _timm():
    try:
        import timm
    except ImportError as error:
        raise ImportError("timm/<name> networks need timm: pip install timm (or the imagenet extra: "
                          "pip install 'inputopt[imagenet]')") from error
    return timm


def _timm_config(name: str):
    """timm's pretrained config of model ``name`` (its default tag unless the name has one)."""
    timm = _timm()
    if not timm.is_model(name.partition(".")[0]):
        close = difflib.get_close_matches(name, timm.list_models(), n=5)
        raise ValueError(f"unknown timm model {name!r}; closest: {', '.join(close) or 'none'} "
                         f"(timm.list_models() lists them)")
    try:
        return timm.models.get_pretrained_cfg(name, allow_unregistered=False)
    except (RuntimeError, ValueError, KeyError):
        return None


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache that ``weights: pretrained`` reads: ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``,
    else ``~/.cache/huggingface/hub`` (read when called, so the environment decides)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    return Path(os.environ.get("HF_HOME", "~/.cache/huggingface")).expanduser() / "hub"


def _timm_cached_weights(name: str) -> Path:
    """The file of ``name``'s pretrained weights in the local Hugging Face cache; a
    :class:`WeightsUnavailableError` naming the cache and the offline alternative when it is not there."""
    config = _timm_config(name)
    repo = getattr(config, "hf_hub_id", None)
    if not repo:
        raise WeightsUnavailableError(f"timm model {name!r} has no Hugging Face weights to read from the cache; "
                                      f"give a local file with state_dict: path/to/weights")
    from huggingface_hub import try_to_load_from_cache

    cache = hf_cache_dir()
    files = [getattr(config, "hf_hub_filename", None), "model.safetensors", "pytorch_model.bin"]
    for file in dict.fromkeys(f for f in files if f):
        found = try_to_load_from_cache(repo, file, cache_dir=cache)
        if isinstance(found, str):
            return Path(found)
    raise WeightsUnavailableError(
        f"the pretrained weights of timm/{name} ({repo}) are not in the Hugging Face cache {cache} (nothing is "
        f"downloaded here). Put them there (huggingface-cli download {repo} on a machine online, then copy the "
        f"cache; HF_HUB_CACHE or HF_HOME move it), or give a local file: state_dict: path/to/weights "
        f"(.safetensors or torch.save), or weights: null for random weights")


def _timm_network(name: str, weights: str | None) -> nn.Module:
    _timm_config(name)  # checks the name
    if weights not in (None, "pretrained"):
        raise ValueError(f"weights for a timm model are 'pretrained' (from the Hugging Face cache) or None, "
                         f"got {weights!r}")
    network = _timm().create_model(name, pretrained=False)
    if weights == "pretrained":
        _timm_load(network, _timm_cached_weights(name), TIMM_PREFIX + name)
    return network


def _timm_load(network: nn.Module, path: str | os.PathLike, name: str) -> None:
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"state_dict file {str(path)!r} does not exist")
    try:
        _timm().models.load_checkpoint(network, str(path), strict=True)
    except Exception as error:  # safetensors, pickle and key errors alike: name the file
        raise ValueError(f"cannot load {str(path)!r} into {name}: {error}") from error


def default_normalization(name: str) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """``(mean, std)`` a named network expects its [0, 1] input normalized with, when its name says it:
    a timm model's pretrained config; else ``None`` (give ``mean``/``std``).

    Example:
        >>> default_normalization("timm/vit_tiny_patch16_224"), default_normalization("digits")
        (((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)), None)
    """
    if not name.startswith(TIMM_PREFIX):
        return None
    config = _timm_config(name[len(TIMM_PREFIX):])
    if config is None or config.mean is None:
        return None
    return tuple(float(v) for v in config.mean), tuple(float(v) for v in config.std)


def _torchvision_network(name: str, weights: str | None) -> nn.Module:
    import torchvision

    names = _torchvision_names()
    if name not in names:
        close = difflib.get_close_matches(name, names + list(ZOO) + list(IMAGENET_ZOO), n=5)
        raise ValueError(f"unknown network {name!r}; closest: {', '.join(close) or 'none'}. Valid names: "
                         f"the zoo ({', '.join(ZOO)}), the imagenet extra ({', '.join(IMAGENET_ZOO)}), "
                         f"torchvision classifiers "
                         f"(torchvision.models.list_models()), or a dotted import path")
    if weights is None:
        return torchvision.models.get_model(name, weights=None)
    enum = torchvision.models.get_model_weights(name)
    try:
        member = enum[weights.rpartition(".")[2]] if weights != "DEFAULT" else enum.DEFAULT
    except KeyError:
        valid = ", ".join(dict.fromkeys(["DEFAULT", *enum.__members__]))
        raise ValueError(f"unknown weights {weights!r} for {name}; valid: {valid}") from None
    try:
        return torchvision.models.get_model(name, weights=member)
    except (URLError, OSError) as error:
        raise WeightsUnavailableError(
            f"cannot download {member} ({error}). Offline, put the file at {_weights_file(member)} "
            f"(torchvision reads it from the torch hub cache; set TORCH_HOME to move it), or pass "
            f"state_dict=path/to/weights.pth, or weights=None for random weights"
        ) from error


def class_names(name: str, num_classes: int | None = None) -> list[str] | None:
    """Human-readable class names of a network, or ``None`` if unknown.

    Zoo models name their classes; torchvision classifiers take them from their default weights'
    metadata (known offline, even when the weights themselves are not downloaded).

    Example:
        >>> class_names("alexnet")[:2]
        ['tench', 'goldfish']
    """
    if name in ZOO:
        from inputopt.zoo.digits import DIGITS_CLASSES

        names = list(DIGITS_CLASSES)
    elif name in IMAGENET_ZOO:
        from inputopt.zoo.efficientnet import imagenet_classes

        names = imagenet_classes()
    elif name in _torchvision_names():
        import torchvision

        try:
            names = list(torchvision.models.get_model_weights(name).DEFAULT.meta["categories"])
        except (ValueError, KeyError, AttributeError):
            return None
    else:
        return None
    if num_classes is not None and len(names) != num_classes:
        return None
    return names


class Normalize(nn.Module):
    """``(x − mean) / std`` per channel, so that an input can live in [0, 1] pixel space.

    Example:
        >>> Normalize([0.5], [0.5])(torch.ones(1, 1, 2, 2))
        tensor([[[[1., 1.],
                  [1., 1.]]]])
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        values = [*mean, *std]
        if len(mean) != len(std) or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values) \
                or any(s <= 0 for s in std):
            raise ValueError(f"mean and std need one finite value per channel and std > 0; got {mean}, {std}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[1] != self.mean.shape[1]:
            raise ValueError(f"mean and std have {self.mean.shape[1]} values, one per channel, but the images have "
                             f"{x.shape[1]} channel(s)")
        return (x - self.mean) / self.std


def frozen_network(network: str | nn.Module, weights: str | None = None, state_dict: str | None = None,
                   seed: int = 0) -> nn.Module:
    """The network of a run: built by name and frozen (random weights, when asked for, from ``seed`` only,
    without touching the global random state), or a module as it was given (a run freezes it while it runs,
    with :func:`frozen`, and hands it back with its own modes and ``requires_grad`` flags).

    Example:
        >>> frozen_network("digits").training
        False
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64:
        raise ValueError(f"seed must be an int in [0, 2**64) (it seeds torch's generator), got {seed!r}")
    if isinstance(network, str):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return build_network(network, weights=weights, state_dict=state_dict)
    if weights is not None or state_dict is not None:
        raise ValueError("weights and state_dict apply to a network given by name, not to a module")
    return network


def state_hash(network: nn.Module) -> str:
    """SHA-256 of a network's state dict (names, dtypes, shapes and values): what a record keeps of a network
    given as a module.

    Example:
        >>> len(state_hash(nn.Linear(2, 2)))
        64
    """
    digest = hashlib.sha256()
    for name, tensor in network.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class NetworkSpec:
    """The network of a run or an attack, described once: what to build (a name, or a module) with which
    weights, and the input normalization in front of it. A :class:`~inputopt.problem.Problem` holds one (in a
    config, ``network:`` is a name or a mapping of these fields); an attack builds one from its ``model``,
    ``weights``, ``state_dict``, ``mean`` and ``std``. The checks live here.

    Args:
        model: a network name (zoo, torchvision, dotted path) or an ``nn.Module``.
        weights: torchvision weights name, for a named network.
        state_dict: local state_dict file, for a named network.
        mean: per-channel mean of the input normalization (with ``std``, or neither).
        std: per-channel standard deviation of the normalization.
        layouts: per-layer layouts that declare or override the network's (:mod:`inputopt.layouts`):
            ``{"blocks.3": {"kind": "tokens", "special": 1, "grid": [14, 14]}}``; plain data.
        output: for a network whose forward returns a tuple, dict or dataclass (a Hugging Face
            ``ModelOutput``), the entry to use as its output: an index, a key or a field (``"logits"``).

    Example:
        >>> spec = NetworkSpec("digits", mean=[0.5], std=[0.5])
        >>> spec.name, spec.build().training, spec.normalization().std.flatten().tolist()
        ('digits', False, [0.5])
    """

    model: str | nn.Module
    weights: str | None = None
    state_dict: str | None = None
    mean: Sequence[float] | None = None
    std: Sequence[float] | None = None
    layouts: Mapping[str, Any] | None = None
    output: str | int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.model, (str, nn.Module)):
            raise TypeError(f"the network must be an nn.Module or a network name, got {type(self.model).__name__}")
        if not isinstance(self.model, str) and (self.weights is not None or self.state_dict is not None):
            raise ValueError("weights and state_dict apply to a network given by name, not to a module")
        if (self.mean is None) != (self.std is None):
            raise ValueError("give both mean and std for input normalization, or neither")
        if self.layouts is not None:
            if not isinstance(self.layouts, Mapping):
                raise ValueError(f"layouts must map layer names to layouts, got {self.layouts!r}")
            for name, value in self.layouts.items():
                try:
                    Layout.of(value)  # checked now; the names when the network is built
                except ValueError as error:
                    raise ValueError(f"layout of layer {name!r}: {error}") from error
        if self.output is not None and (isinstance(self.output, bool) or not isinstance(self.output, (str, int))):
            raise ValueError(f"output must name the network's output (an index, a key or a field), "
                             f"got {self.output!r}")
        if self.mean is not None:
            Normalize(self.mean, self.std)  # checks the values now (the error shows them as given)
            object.__setattr__(self, "mean", tuple(self.mean))
            object.__setattr__(self, "std", tuple(self.std))

    @property
    def name(self) -> str | None:
        """The network's name, or ``None`` for a module."""
        return self.model if isinstance(self.model, str) else None

    def build(self, seed: int | None = 0) -> nn.Module:
        """The network: :func:`frozen_network` with ``seed`` (random weights from it only), or with
        ``seed=None`` built under the global random state and a module used as it is; with the spec's
        ``layouts`` declared on it and its ``output`` chosen."""
        if seed is not None:
            network = frozen_network(self.model, self.weights, self.state_dict, seed)
        elif isinstance(self.model, str):
            network = build_network(self.model, weights=self.weights, state_dict=self.state_dict)
        else:
            network = self.model
        if self.layouts:
            declare_layouts(network, self.layouts)
        if self.output is not None:
            object.__setattr__(network, "inputopt_output", self.output)
        return network

    def config(self) -> str | dict[str, Any]:
        """The spec as plain data: the name alone when nothing else is set, else the non-default fields; a
        module is described by its class and a hash of its state (it cannot be rebuilt from data).

        Example:
            >>> NetworkSpec("digits").config(), NetworkSpec("digits", mean=[0.5], std=[0.5]).config()
            ('digits', {'model': 'digits', 'mean': [0.5], 'std': [0.5]})
        """
        if isinstance(self.model, nn.Module):
            model: Any = {"module": f"{type(self.model).__module__}.{type(self.model).__qualname__}",
                          "sha256": state_hash(self.model)}
        else:
            model = self.model
        fields = {"model": model, "weights": self.weights, "state_dict": self.state_dict,
                  "mean": None if self.mean is None else list(self.mean),
                  "std": None if self.std is None else list(self.std),
                  "layouts": None if self.layouts is None else {k: dict(v) if isinstance(v, Mapping) else v
                                                                for k, v in self.layouts.items()},
                  "output": self.output}
        kept = {key: value for key, value in fields.items() if value is not None}
        return model if len(kept) == 1 else kept

    def normalization(self) -> Normalize | None:
        """A new :class:`Normalize` of ``mean``/``std``; without them, a timm model's from its pretrained config
        (:func:`default_normalization`), else ``None``."""
        if self.mean is not None:
            return Normalize(self.mean, self.std)
        default = default_normalization(self.name) if self.name is not None else None
        return Normalize(*default) if default is not None else None


def probe(network: nn.Module, images: Tensor, layers: Sequence[str], normalize: nn.Module | None = None,
          name: str | None = None) -> dict[str, Tensor]:
    """The shape probe, written once: the evaluation forward of ``images`` up to ``layers``, without
    gradients, with an error that says what the network takes when it cannot take them (instead of the
    failing layer's message alone). ``name`` is the network's name, when it has one, for that message.

    Example:
        >>> probe(build_network("digits"), torch.zeros(1, 1, 32, 32), [""])[""].shape
        torch.Size([1, 10])
    """
    try:
        with torch.no_grad(), frozen(network):  # a user's module: BatchNorm statistics untouched
            return evaluate(network, images, layers, normalize)
    except RuntimeError as error:
        raise ValueError(f"the network cannot take images of shape (C, H, W) = {tuple(images.shape[1:])}: "
                         f"{_expected_input(network, name)}; make image_shape (or init) fit it. "
                         f"The network said: {error}") from error


def _expected_input(network: nn.Module, name: str | None) -> str:
    """What the network takes, for error messages: its known input shape, else its first layer's channels."""
    shape = default_image_shape(name) if name is not None else None
    if shape is not None:
        return f"{name} takes (C, H, W) = {shape}"
    first = next(((n, m) for n, m in network.named_modules() if isinstance(m, nn.Conv2d)), None)
    if first is not None:
        return f"its first convolution {first[0]!r} takes {first[1].in_channels} channel(s)"
    return "its input shape is unknown"


class FrozenNetworkHolder:
    """Mixin for a module that runs a frozen network kept *outside* its module tree (``self._network``): the
    network is then neither trained, nor in the optimizer, nor in the checkpoint, yet it follows the module's
    device and dtype moves (``.to``, ``.cuda``, ``.half``). Put it before ``nn.Module`` (or
    ``LightningModule``) among the bases, and set the network with ``object.__setattr__`` so that
    ``nn.Module`` does not register it as a submodule.

    Example:
        >>> class Holder(FrozenNetworkHolder, nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         object.__setattr__(self, "_network", nn.Linear(2, 2))
        >>> holder = Holder().double()
        >>> holder.network.weight.dtype, list(holder.state_dict())
        (torch.float64, [])
    """

    _network: nn.Module

    @property
    def network(self) -> nn.Module:
        """The frozen network (eval mode, no gradients, not a submodule)."""
        return self._network

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        self._network._apply(fn, *args, **kwargs)
        return self

    def _freeze_network(self) -> None:
        """Freeze the network for a run (:func:`frozen`): call when the run starts (``setup``); nested calls
        freeze once."""
        stack = self.__dict__.get("_frozen_network")
        if stack is None:
            stack = contextlib.ExitStack()
            stack.enter_context(frozen(self._network))
            self.__dict__["_frozen_network"] = stack

    def _give_back_network(self) -> None:
        """Hand the network back with the modes and ``requires_grad`` flags it had when the run started: call
        when the run ends or fails."""
        stack = self.__dict__.pop("_frozen_network", None)
        if stack is not None:
            stack.close()
