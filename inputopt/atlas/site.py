"""The atlas' static web site, written from the files of an atlas folder alone (Jinja2 templates, every name
escaped): ``index.html`` (the layers), ``site/<layer>.html`` (a card per unit: its visualizations, dataset
examples and metrics; sorting and filtering in a few lines of JavaScript) and ``site/<layer>/<unit>.html``
(large images, metrics, the command that reproduces the unit, previous and next unit).

The pages open from the file system (``file://``): no server, nothing fetched from the network, every
image a file of the folder referenced by a relative link. The same files give the same site, byte for
byte, so the site can be deleted and rebuilt at any time (:func:`build_site`).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import quote


from inputopt.atlas.config import crop_name
from inputopt.results import file_name, read_record

__all__ = ["METRIC_LABELS", "build_site", "load_atlas"]

#: How the metrics are named on the pages (others are shown by their key).
METRIC_LABELS = {"activation_ratio": "activation ratio", "high_frequency_energy": "high-frequency energy"}
_THUMBNAILS = 16
_PACKAGE = Path(__file__).parent


def _label(key: str) -> str:
    if key.startswith("transfer/"):
        return f"transfer: {key.split('/', 1)[1]}"
    return METRIC_LABELS.get(key, key)


def _files(folder: Path) -> set[str]:
    try:
        return set(os.listdir(folder))
    except FileNotFoundError:
        return set()


def _url(*parts: str) -> str:
    return "/".join(quote(part, safe="") for part in parts)


def load_atlas(atlas_dir: str | os.PathLike) -> dict[str, Any]:
    """Everything the pages show, read from the files of an atlas folder (what is missing is left out).

    Returns ``{"record", "layers"}``; each layer has its ``name``, ``slug``, ``kind``, ``shape``,
    ``seeds``, ``metrics`` (the keys, in order), ``sampled`` (the images the percentiles were taken over, or
    ``None``), ``checked`` (whether any unit has visualization checks) and
    ``units``: per unit its ``unit``, ``images`` (paths relative to the folder, one per seed present),
    ``examples`` (the top ones, highest first: ``path``, ``value``, ``index``, ``label``: the image's class or
    ``None``, ``q``: ``None``), ``bottom`` (the lowest first) and ``percentiles`` (``q``: the percentile; in the
    order of the atlas' ``percentiles``), each with the examples whose crop is on disk, ``metrics``,
    ``checks`` (``None``, or ``passed`` and ``checks``, each ``name``, ``passed``, ``detail``: the ``checks.json``
    of :class:`~inputopt.callbacks.visualization_checks.VisualizationChecks` in the layer's first seed folder
    that has one) and ``fit`` (the fit config's path and text, or ``None``).
    """
    root = Path(atlas_dir)
    record_path = root / "atlas.yaml"
    if not record_path.is_file():
        raise FileNotFoundError(f"{root} is not an atlas folder: no atlas.yaml (run `inputopt atlas` first)")
    record = read_record(record_path) or {}
    layers = []
    for slug in record.get("layers", {}):
        folder = root / "layers" / slug
        if not (folder / "layer.json").is_file():
            continue
        info = read_record(folder / "layer.json")
        prefix = info["name"] or "output"
        images = {seed: _files(folder / f"seed-{seed}" / "images") for seed in info["seeds"]}
        examples_path = folder / "examples" / "examples.json"
        examples = read_record(examples_path) if examples_path.is_file() else None
        class_names = (examples or {}).get("class_names") or {}
        crops = _files(folder / "examples" / "crops")
        rows = {u: row for row, u in enumerate(examples["units"])} if examples else {}
        crops_url = _url("layers", slug, "examples", "crops")
        metrics_path = folder / "metrics.json"
        metrics = read_record(metrics_path)["units"] if metrics_path.is_file() else {}
        keys = list(dict.fromkeys(k for values in metrics.values() for k in values))
        checks = _checks(folder, info["seeds"])
        fits = {seed: (folder / f"fit-seed-{seed}.yaml") for seed in info["seeds"]}
        fits = {seed: (f"layers/{slug}/{path.name}", path.read_text()) for seed, path in fits.items() if path.is_file()}
        units = []
        for unit in info["units"]:
            name = f"{file_name(f'{prefix}-{unit}')}.png"
            shown = {group: _examples(examples, group, unit, rows.get(unit), crops_url, crops, class_names)
                     for group in ("top", "bottom", "percentiles")}
            units.append({
                "unit": unit,
                "name": (info.get("unit_names") or {}).get(str(unit)),
                "images": [(seed, _url("layers", slug, f"seed-{seed}", "images", name)) for seed in info["seeds"]
                           if name in images[seed]],
                "examples": shown["top"], "bottom": shown["bottom"], "percentiles": shown["percentiles"],
                "metrics": metrics.get(str(unit), {}),
                "checks": checks.get(unit),
            })
        layers.append({**info, "units": units, "metrics": keys, "fits": fits, "checked": bool(checks),
                       "field_size": (examples or {}).get("field_size"),
                       "sampled": ((examples or {}).get("percentiles") or {}).get("sampled"),
                       "argument": "channel" if info["kind"] == "channel" else "unit",
                       "label": "output (classes)" if info["name"] is None else info["name"]})
    return {"record": record, "layers": layers}


def _examples(examples: dict[str, Any] | None, group: str, unit: int, row: int | None, crops_url: str,
              crops: set[str], class_names: dict[str, str]) -> list[dict[str, Any]]:
    """A unit's examples of ``group`` (``top``, ``bottom``, ``percentiles``) whose crop is on disk (in ``crops``, the
    folder at ``crops_url``), in the results' order (``row``: the unit's row in them), each its crop's ``path``,
    ``value``, data-set ``index``, ``label`` and ``q`` (the percentile, else ``None``)."""
    found = examples if group == "top" else (examples or {}).get(group)
    if not found or row is None:
        return []
    indices, values = found["indices"][row], found["values"][row]
    labels = found["labels"][row] if found.get("labels") else [None] * len(indices)
    quantiles = found.get("q") or [None] * len(indices)
    shown = []
    for rank, (index, value, label, q) in enumerate(zip(indices, values, labels, quantiles)):
        name = crop_name(unit, group, rank, q)
        if name in crops:
            shown.append({"path": f"{crops_url}/{_url(name)}", "value": value, "index": index,
                          "label": None if label is None else class_names.get(str(label), f"class {label}"),
                          "q": q})
    return shown


def _checks(folder: Path, seeds: list) -> dict[int, dict[str, Any]]:
    """Per unit, its visualization checks from the first seed folder with a ``checks.json`` (none: ``{}``)."""
    for seed in seeds:
        path = folder / f"seed-{seed}" / "checks.json"
        if path.is_file():
            return {int(row["unit"]): {"passed": bool(row["passed"]), "checks": row["checks"]}
                    for row in json.loads(path.read_text())}
    return {}


def _environment():
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    env = Environment(loader=FileSystemLoader(str(_PACKAGE / "templates")), autoescape=select_autoescape(
        enabled_extensions=("html", "j2"), default_for_string=True, default=True), undefined=StrictUndefined,
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)

    def number(value: Any) -> str:
        if value is None:
            return "–"
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
        return str(value)

    def ordinal(value: float) -> str:
        text = f"{float(value):g}"
        if float(value) != int(value) or int(value) % 100 in (11, 12, 13):
            return f"{text}th"
        return text + {1: "st", 2: "nd", 3: "rd"}.get(int(value) % 10, "th")

    env.filters["number"] = number
    env.filters["ordinal"] = ordinal
    env.filters["label"] = _label
    env.filters["url"] = lambda text: quote(str(text), safe="")
    env.filters["sortvalue"] = lambda value: "" if value is None else repr(float(value))
    return env


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def build_site(atlas_dir: str | os.PathLike, title: str | None = None) -> list[Path]:
    """Write the web site of an atlas folder from its files: ``index.html``, ``site/atlas.css``,
    ``site/atlas.js``, a page per layer and per unit. Returns the pages' paths.

    Args:
        atlas_dir: the atlas folder (with ``atlas.yaml``).
        title: the site's title (default: the one given last, kept in ``site.json``, else after the network).

    Example:
        >>> build_site("results/digits_atlas")  # doctest: +SKIP
    """
    root = Path(atlas_dir)
    atlas = load_atlas(root)
    network = (atlas["record"].get("problem") or {}).get("network")  # a name, a spec's fields or a module's record
    model = network.get("model", network) if isinstance(network, dict) else network
    name = model if isinstance(model, str) else (model or {}).get("module", "network")
    settings = root / "site.json"  # a title given once is kept for the rebuilds (--site_only)
    if title is not None:
        _write(settings, json.dumps({"title": title}) + "\n")
    elif settings.is_file():
        title = read_record(settings).get("title")
    title = title or f"{name} atlas"
    env = _environment()
    site = root / "site"
    site.mkdir(parents=True, exist_ok=True)
    for static in ("atlas.css", "atlas.js"):
        shutil.copyfile(_PACKAGE / "templates" / static, site / static)
    common = {"title": title, "network": name, "record": atlas["record"]}
    pages = []
    index = root / "index.html"
    _write(index, env.get_template("index.html.j2").render(**common, layers=atlas["layers"], base="",
                                                           thumbnails=_THUMBNAILS))
    pages.append(index)
    layer_template, unit_template = env.get_template("layer.html.j2"), env.get_template("unit.html.j2")
    for layer in atlas["layers"]:
        path = site / f"{layer['slug']}.html"
        _write(path, layer_template.render(**common, layer=layer, base="../"))
        pages.append(path)
        units = layer["units"]
        for i, unit in enumerate(units):
            path = site / layer["slug"] / f"{unit['unit']}.html"
            _write(path, unit_template.render(
                **common, layer=layer, unit=unit, base="../../",
                previous=units[i - 1]["unit"] if i > 0 else None,
                next=units[i + 1]["unit"] if i + 1 < len(units) else None))
            pages.append(path)
    return pages

