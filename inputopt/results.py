"""Write optimized inputs to disk as PNG images, with torchvision's utilities."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.utils import make_grid, save_image

from inputopt.functional.display import DisplayMode, to_display

__all__ = ["MANIFEST", "WriteError", "adversarial_grid", "annotated_adversarial_grid", "atomic_write", "check_contained",
           "example_sheet", "file_name", "image_grid", "record_written", "remove_written", "save_grid", "save_images",
           "strict_json", "write_text", "written"]


#: Characters a file name never gets from an image's name: path separators, those Windows refuses, control characters.
_UNSAFE = re.compile(r'[/\\<>:"|?*\x00-\x1f\x7f]')
_MAX_NAME = 150


def file_name(name: str) -> str:
    """The file name (without extension) of an image's name, safe to join to its folder: separators and other
    characters a file name cannot hold become ``_``, ``.``/``..`` get a ``_`` in front, and a very long name is
    cut and given a hash of the whole. Layer names come from the network, so a layer named ``/tmp/x`` or
    ``sub/dir`` stays a file inside the results folder.

    Example:
        >>> file_name("features.4-3"), file_name("/tmp/x/ESC-0"), file_name("sub/dir-1"), file_name("..")
        ('features.4-3', '_tmp_x_ESC-0', 'sub_dir-1', '_..')
    """
    safe = _UNSAFE.sub("_", str(name))
    if safe.strip(".") == "":
        safe = "_" + safe
    if len(safe) > _MAX_NAME:
        safe = safe[:_MAX_NAME - 17] + "-" + hashlib.sha256(str(name).encode()).hexdigest()[:16]
    return safe


class WriteError(OSError):
    """A result or checkpoint file could not be written (a full disk, a read-only folder); the file it was to
    replace is left as it was."""

    def __str__(self) -> str:  # the message alone, without "[Errno 28]"
        return str(self.strerror)


@contextlib.contextmanager
def _atomic_file(path: Path) -> Iterator:
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")  # in its own folder: the rename is atomic
    try:
        with open(partial, "wb") as handle:
            yield handle
            handle.flush()
            with contextlib.suppress(AttributeError, OSError, ValueError):  # a file object without a descriptor
                os.fsync(handle.fileno())
        os.replace(partial, path)
    except Exception as raised:
        partial.unlink(missing_ok=True)
        error = raised  # a writer may wrap the OSError (torch.save's zip writer raises a RuntimeError after it)
        while error is not None and not isinstance(error, OSError):
            error = error.__cause__ or error.__context__
        if error is None or isinstance(error, WriteError):
            raise
        reason = error.strerror or str(error)
        raise WriteError(error.errno or errno.EIO, f"could not write {path}: {reason}; "
                         f"{'the previous ' + path.name + ' is left as it was' if path.exists() else 'nothing written'}"
                         ) from None
    except BaseException:  # KeyboardInterrupt, SystemExit: nothing half-written left behind
        partial.unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike, write: Callable, folder: str | os.PathLike | None = None) -> Path:
    """Write ``path`` whole or not at all: ``write(file)`` fills a temporary file beside it (in its own folder,
    never the system's temporary folder), which is then synced and renamed over ``path``. A failure (a full
    disk: ``OSError(ENOSPC)``) removes the temporary file, leaves the previous ``path`` as it was, and raises
    one :class:`WriteError` (an ``OSError``) that names the file. With ``folder``, ``path`` must stay inside it
    (:func:`check_contained`). Returns the path.

    Example:
        >>> import tempfile, torch
        >>> path = atomic_write(Path(tempfile.mkdtemp()) / "x.pt", lambda f: torch.save(torch.ones(2), f))
        >>> torch.load(path).tolist(), sorted(p.name for p in path.parent.iterdir())
        ([1.0, 1.0], ['x.pt'])
    """
    path = Path(path)
    if folder is not None:
        check_contained(path, folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _atomic_file(path) as handle:
        write(handle)
    return path


def write_text(path: str | os.PathLike, text: str, folder: str | os.PathLike | None = None) -> Path:
    """:func:`atomic_write` of a text file (UTF-8)."""
    return atomic_write(path, lambda handle: handle.write(text.encode("utf-8")), folder)


def check_contained(path: str | os.PathLike, folder: str | os.PathLike) -> Path:
    """Refuse a ``path`` that leaves ``folder`` once its symbolic links are followed (a symlinked ``images/``
    pointing elsewhere): a run writes only inside its folder. Returns ``path``.

    Example:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> (root / "images").symlink_to(tempfile.mkdtemp())
        >>> check_contained(root / "images" / "a.png", root)
        Traceback (most recent call last):
        ...
        ValueError: ...images is a symbolic link that leads out of the run folder...
    """
    path, folder = Path(path), Path(folder)
    root = os.path.realpath(folder)
    inside = os.path.realpath(path)
    if os.path.commonpath([root, inside]) != root:
        try:
            parts = path.relative_to(folder).parts
        except ValueError:
            parts = path.parts
        link = next((folder.joinpath(*parts[:i]) for i in range(1, len(parts) + 1)
                     if folder.joinpath(*parts[:i]).is_symlink()), path)
        raise ValueError(f"{link} is a symbolic link that leads out of the run folder {folder} (to "
                         f"{os.path.realpath(link)}); a run writes only inside its folder: remove the link, or "
                         f"give the run another folder")
    return path


#: The file in an output folder that lists the files the library wrote there (relative paths, one JSON list):
#: the only files a later run removes as "a previous run's".
MANIFEST = ".inputopt-written.json"


def written(folder: str | os.PathLike) -> list[str]:
    """The files the library recorded as written in ``folder`` (:func:`record_written`), relative to it."""
    path = Path(folder) / MANIFEST
    try:
        names = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    return [n for n in names if isinstance(n, str)] if isinstance(names, list) else []


def record_written(folder: str | os.PathLike, paths: Iterable[str | os.PathLike]) -> None:
    """Add ``paths`` (inside ``folder``) to its manifest of the files the library wrote there.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> record_written(folder, [folder / "grid.png", folder / "images" / "a.png"])
        >>> written(folder)
        ['grid.png', 'images/a.png']
    """
    folder = Path(folder)
    names = dict.fromkeys(written(folder))
    for path in paths:
        names[Path(os.path.relpath(path, folder)).as_posix()] = None
    write_text(folder / MANIFEST, json.dumps(sorted(names)) + "\n")


def remove_written(folder: str | os.PathLike, keep: Iterable[str | os.PathLike] = (),
                   select: Callable[[str], bool] = lambda name: True) -> list[str]:
    """Remove the files the manifest of ``folder`` lists (those ``select`` accepts, but ``keep``), and only
    those: a file the user put there (``images/my_photo.png``) is never removed. Returns the removed names.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = write_text(folder / "ours.txt", "x"), write_text(folder / "users.txt", "y")
        >>> record_written(folder, [folder / "ours.txt"])
        >>> remove_written(folder), sorted(p.name for p in folder.iterdir() if p.name != MANIFEST)
        (['ours.txt'], ['users.txt'])
    """
    folder = Path(folder)
    kept = {Path(os.path.relpath(p, folder)).as_posix() for p in keep}
    names, removed = written(folder), []
    for name in names:
        if name not in kept and select(name) and ".." not in Path(name).parts and not Path(name).is_absolute():
            (folder / name).unlink(missing_ok=True)
            removed.append(name)
    if removed:
        write_text(folder / MANIFEST, json.dumps([n for n in names if n not in removed]) + "\n")
    return removed


def image_grid(x: Tensor, display: DisplayMode = "std", nrow: int | None = None, scale: int = 1) -> Tensor:
    """One ``(3, H', W')`` image showing every image of ``x`` (display-normalized, white padding).

    Args:
        x: images ``(B, C, H, W)``.
        display: ``"std"`` (``0.5 + 0.1·(x − mean)/std``) or ``"clamp"`` (to [0, 1]).
        nrow: images per row (default: a square-ish grid).
        scale: integer upscaling (nearest neighbour), for small images.

    Example:
        >>> import torch
        >>> image_grid(torch.randn(4, 1, 8, 8)).shape
        torch.Size([3, 22, 22])
    """
    images = to_display(x, display)
    if scale != 1:
        images = F.interpolate(images, scale_factor=scale, mode="nearest")
    nrow = nrow or math.ceil(math.sqrt(images.shape[0]))
    return make_grid(images, nrow=nrow, padding=2, pad_value=1.0)


def save_grid(x: Tensor, path: str | os.PathLike, display: DisplayMode = "std", nrow: int | None = None,
              scale: int = 1) -> Path:
    """Save all images of ``x`` as one PNG grid; returns the path. See :func:`image_grid`."""
    grid = image_grid(x, display, nrow, scale)
    return atomic_write(path, lambda handle: save_image(grid, handle, format="png"))


def save_images(x: Tensor, directory: str | os.PathLike, names: Sequence[str], display: DisplayMode = "std",
                scale: int = 1) -> list[Path]:
    """Save each image of ``x`` as ``directory/<name>.png`` (the name made safe by :func:`file_name`: every file
    stays inside ``directory``); returns the paths.

    Example:
        >>> import torch, tempfile
        >>> paths = save_images(torch.randn(2, 3, 8, 8), tempfile.mkdtemp(), ["a", "b"])
        >>> [p.name for p in paths]
        ['a.png', 'b.png']
    """
    if len(names) != x.shape[0]:
        raise ValueError(f"{x.shape[0]} images but {len(names)} names")
    files = [file_name(n) for n in names]
    clashes = sorted({f for f in files if files.count(f) > 1})
    if clashes:
        raise ValueError(f"the image names {list(names)} give the same file name twice ({clashes}), once made safe "
                         f"for the file system; name the layers apart")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    images = to_display(x, display)
    if scale != 1:
        images = F.interpolate(images, scale_factor=scale, mode="nearest")
    paths = [directory / f"{name}.png" for name in files]
    for image, path in zip(images, paths):
        atomic_write(path, lambda handle, image=image: save_image(image, handle, format="png"))
    return paths


def adversarial_grid(clean: Tensor, adversarial: Tensor, scale: int = 1) -> Tensor:
    """One picture of clean images, their adversarial versions and the magnified perturbations.

    Row ``i``: the clean image, then for every ε the adversarial image and its perturbation ``δ`` shown as
    ``0.5 + δ / (2·max|δ|)`` (grey: unchanged; the largest change is black or white).

    Args:
        clean: ``(N, C, H, W)`` in [0, 1].
        adversarial: ``(N, E, C, H, W)``: one image per ε.
        scale: integer upscaling (nearest neighbour), for small images.

    Example:
        >>> import torch
        >>> adversarial_grid(torch.rand(2, 1, 8, 8), torch.rand(2, 3, 1, 8, 8)).shape
        torch.Size([3, 22, 72])
    """
    if adversarial.ndim != 5 or adversarial.shape[0] != clean.shape[0] or adversarial.shape[2:] != clean.shape[1:]:
        raise ValueError(f"adversarial must be (N, E, C, H, W) for clean images {tuple(clean.shape)}, "
                         f"got {tuple(adversarial.shape)}")
    delta = adversarial - clean.unsqueeze(1)
    peak = delta.flatten(2).abs().amax(2).clamp_min(1e-12).view(*delta.shape[:2], 1, 1, 1)
    tiles = [clean.unsqueeze(1)]
    for e in range(adversarial.shape[1]):
        tiles += [adversarial[:, e:e + 1], 0.5 + delta[:, e:e + 1] / (2 * peak[:, e:e + 1])]
    rows = torch.cat(tiles, 1)  # (N, 1 + 2E, C, H, W)
    images = rows.flatten(0, 1).clamp(0, 1)
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    if scale != 1:
        images = F.interpolate(images, scale_factor=scale, mode="nearest")
    return make_grid(images, nrow=rows.shape[1], padding=2, pad_value=1.0)


def annotated_adversarial_grid(clean: Tensor, adversarial: Tensor, eps: Sequence[float | None],
                               clean_predictions: Tensor, predictions: Tensor,
                               class_names: Sequence[str] | None = None, scale: int = 1) -> Tensor:
    """:func:`adversarial_grid` with words: a title over each column ("clean", then "adv eps=…" and
    "delta eps=…" for every ε) and the predicted class under each clean and adversarial image (its name
    where ``class_names`` is given, else its index; the largest pixel change under each perturbation).

    Args:
        clean: ``(N, C, H, W)`` in [0, 1].
        adversarial: ``(N, E, C, H, W)``: one image per ε.
        eps: the E budgets (``None`` for a minimal-norm attack without one).
        clean_predictions: ``(N,)`` the predicted class of each clean image.
        predictions: ``(N, E)`` the predicted class of each adversarial image.
        class_names: the network's class names, or ``None``.
        scale: integer upscaling (nearest neighbour), for small images.

    Returns:
        ``(3, H', W')`` in [0, 1], for ``torchvision.utils.save_image`` or TensorBoard.

    Example:
        >>> picture = annotated_adversarial_grid(torch.rand(2, 1, 8, 8), torch.rand(2, 1, 1, 8, 8), [0.1],
        ...                                      torch.tensor([3, 4]), torch.tensor([[5], [4]]))
        >>> picture.shape[0], picture.shape[1] > 2 * 8
        (3, True)
    """
    from PIL import Image, ImageDraw, ImageFont

    if adversarial.ndim != 5 or adversarial.shape[0] != clean.shape[0] or adversarial.shape[2:] != clean.shape[1:]:
        raise ValueError(f"adversarial must be (N, E, C, H, W) for clean images {tuple(clean.shape)}, "
                         f"got {tuple(adversarial.shape)}")
    n, e = adversarial.shape[:2]
    if len(eps) != e or tuple(predictions.shape) != (n, e) or tuple(clean_predictions.shape) != (n,):
        raise ValueError(f"need {e} eps, predictions of shape ({n}, {e}) and clean_predictions of shape ({n},); got "
                         f"{len(eps)} eps, {tuple(predictions.shape)} and {tuple(clean_predictions.shape)}")
    grid = adversarial_grid(clean, adversarial, scale)
    delta = (adversarial - clean.unsqueeze(1)).flatten(2).abs().amax(2)  # (N, E)
    tile_h, tile_w = clean.shape[2] * scale, clean.shape[3] * scale

    def name(k: int) -> str:
        return class_names[k] if class_names is not None and 0 <= k < len(class_names) else str(k)

    def budget(value) -> str:
        return "eps -" if value is None else f"eps={value:.3g}"

    titles = ["clean"] + [t for value in eps for t in (f"adv {budget(value)}", f"delta {budget(value)}")]
    captions = [[name(int(clean_predictions[i]))] + [
        c for j in range(e) for c in (name(int(predictions[i, j])), f"max {delta[i, j].item():.2g}")]
        for i in range(n)]
    try:
        font = ImageFont.load_default(size=11)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        font = ImageFont.load_default()
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    def width(text: str) -> int:
        box = measure.textbbox((0, 0), text, font=font)
        return box[2] - box[0]

    line = 14
    column = max([tile_w + 2] + [width(t) + 6 for t in titles] + [width(c) + 6 for row in captions for c in row])
    cols = 1 + 2 * e
    canvas = Image.new("RGB", (cols * column, line + n * (tile_h + 2 + line)), "white")
    draw = ImageDraw.Draw(canvas)
    tiles = (grid.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
    for c, title in enumerate(titles):
        draw.text((c * column + (column - width(title)) // 2, 1), title, fill="black", font=font)
    for i in range(n):
        top = line + i * (tile_h + 2 + line)
        for c in range(cols):
            y0, x0 = 2 + i * (tile_h + 2), 2 + c * (tile_w + 2)  # the tile in make_grid's layout (padding 2)
            tile = Image.fromarray(tiles[y0:y0 + tile_h, x0:x0 + tile_w])
            canvas.paste(tile, (c * column + (column - tile_w) // 2, top))
            text = captions[i][c]
            draw.text((c * column + (column - width(text)) // 2, top + tile_h + 1), text, fill="black", font=font)
    import numpy as np

    return torch.from_numpy(np.asarray(canvas).copy()).permute(2, 0, 1).float().div(255)


def check_yaml_expansion(text: str, source: str, limit: int = 100_000) -> None:
    r"""Refuse YAML ``text`` whose aliases expand to more than ``limit`` values (a "billion laughs" of a few
    lines expands to 10**9), or refer to a node that contains them, before anything is built: the nodes are
    counted on the composed graph, where an alias is a shared node, so the count costs the size of the text.

    Example:
        >>> check_yaml_expansion("a: &a [1, 2]\nb: [*a, *a]", "a config")
        >>> bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        ...     f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
        >>> check_yaml_expansion(bomb, "bomb.yaml")
        Traceback (most recent call last):
        ...
        ValueError: bomb.yaml: the YAML expands to more than 100000 values (aliases that repeat aliases, ...
    """
    import yaml

    if "*" not in text:  # no alias: nothing expands
        return
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise ValueError(f"{source}: a YAML alias refers to a node that contains it (a recursive structure): "
                             f"refused")
        active.add(key)
        if isinstance(node, yaml.SequenceNode):
            total = 1 + sum(size(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total = 1 + sum(size(k) + size(v) for k, v in node.value)
        else:
            total = 1
        active.discard(key)
        sizes[key] = total
        if total > limit:
            raise ValueError(f"{source}: the YAML expands to more than {limit} values (aliases that repeat "
                             f"aliases, a 'billion laughs'): refused")
        return total

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
    try:
        while loader.check_node():
            size(loader.get_node())
    finally:
        loader.dispose()


def read_record(path: str | os.PathLike) -> object:
    """A result or record file the library wrote (``.json``, or YAML for ``.yaml``/``.yml``), with an error that
    names the file when it is corrupt or truncated (a full disk, a run killed mid-write, a hand edit).

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "metrics.json"
        >>> _ = path.write_text('{"units": {"0": ')
        >>> read_record(path)
        Traceback (most recent call last):
        ...
        ValueError: cannot read .../metrics.json (corrupt or truncated: Expecting value at line 1, column 17); ...
    """
    import json

    import yaml

    path = Path(path)
    try:
        text = path.read_text()
        if path.suffix in (".yaml", ".yml"):
            check_yaml_expansion(text, str(path))
            return yaml.safe_load(text)
        return json.loads(text)
    except json.JSONDecodeError as error:
        reason = f"{error.msg} at line {error.lineno}, column {error.colno}"
    except (ValueError, yaml.YAMLError) as error:  # UnicodeDecodeError is a ValueError
        reason = " ".join(str(error).split())
    raise ValueError(f"cannot read {path} (corrupt or truncated: {reason}); delete it to have it written again, "
                     f"or restore it")


def strict_json(value, indent: int | None = 2) -> str:
    """``json.dumps`` for result files that every JSON parser reads: NaN and ±Infinity (which Python writes
    as the non-standard ``NaN`` / ``Infinity``) become ``null``.

    Example:
        >>> strict_json({"score": float("-inf"), "rows": [1.5, float("nan")]}, indent=None)
        '{"score": null, "rows": [1.5, null]}'
    """
    import json

    def clean(item):
        if isinstance(item, float) and not math.isfinite(item):
            return None
        if isinstance(item, dict):
            return {key: clean(v) for key, v in item.items()}
        if isinstance(item, (list, tuple)):
            return [clean(v) for v in item]
        return item

    return json.dumps(clean(value), indent=indent, allow_nan=False)


def example_sheet(blocks: Sequence[dict], tile: int = 96, display: DisplayMode = "clamp",
                  columns: int | None = None) -> Tensor:
    """A readable sheet of labelled examples: one block per unit (its title, then rows of tiles, each row with
    a label and each tile with a caption of up to two lines, cut to the tile's width), the blocks laid out in
    ``columns`` columns.

    Args:
        blocks: ``[{"title": str, "rows": [{"label": str, "images": (n, C, h, w), "captions": [str] * n}]}]``
            (a caption's lines are separated by ``"\n"``).
        tile: the side in pixels of a tile (images are scaled to fit: nearest neighbour up, antialiased down).
        display: ``"clamp"`` (pixel space) or ``"std"`` (see :func:`~inputopt.functional.display.to_display`).
        columns: blocks per line of the sheet (default: about as tall as wide).

    Returns:
        ``(3, H, W)`` in [0, 1].

    Example:
        >>> import torch
        >>> sheet = example_sheet([{"title": "channel 3", "rows": [
        ...     {"label": "top", "images": torch.rand(2, 1, 8, 8), "captions": ["4.1 | 7", "3.9 | 1"]}]}], tile=32)
        >>> sheet.shape
        torch.Size([3, 82, 132])
    """
    from PIL import Image, ImageDraw, ImageFont

    if not blocks:
        raise ValueError("example_sheet needs at least one block")
    font = ImageFont.load_default(size=12)
    line, gap, label_width = 14, 4, 56
    widest = max(len(row["captions"]) for block in blocks for row in block["rows"])
    below = 2 * line  # two caption lines under every tile
    heights = [line + len(block["rows"]) * (tile + below + gap) + gap for block in blocks]
    block_w, block_h = label_width + widest * (tile + gap) + gap, max(heights)
    if columns is None:
        columns = max(1, min(len(blocks), round(math.sqrt(len(blocks) * block_h / block_w))))
    lines = math.ceil(len(blocks) / columns)
    sheet = Image.new("RGB", (columns * block_w, lines * block_h), "white")
    draw = ImageDraw.Draw(sheet)
    for number, block in enumerate(blocks):
        x0, y0 = (number % columns) * block_w, (number // columns) * block_h
        draw.text((x0 + gap, y0 + 1), block["title"], fill="black", font=font)
        y = y0 + line
        for row in block["rows"]:
            draw.text((x0 + gap, y + tile // 2 - line // 2), row["label"], fill="black", font=font)
            if len(row["images"]):
                images = to_display(row["images"].float(), display)
                if images.shape[1] == 1:
                    images = images.expand(-1, 3, -1, -1)
                height, width = images.shape[-2:]
                scale = tile / max(height, width)
                size = (max(1, round(height * scale)), max(1, round(width * scale)))
                images = (F.interpolate(images, size=size, mode="nearest") if scale >= 1 else
                          F.interpolate(images, size=size, mode="bilinear", antialias=True, align_corners=False))
                arrays = (images.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()
                for column, (array, caption) in enumerate(zip(arrays, row["captions"])):
                    x = x0 + label_width + column * (tile + gap)
                    sheet.paste(Image.fromarray(array), (x, y))
                    for number_, text in enumerate(caption.split("\n")[:2]):
                        while text and draw.textlength(text, font=font) > tile + gap - 1:
                            text = text[:-1]
                        draw.text((x, y + tile + 1 + number_ * line), text, fill="black", font=font)
            y += tile + below + gap
    return torch.from_numpy(np.asarray(sheet).copy()).permute(2, 0, 1).float() / 255
