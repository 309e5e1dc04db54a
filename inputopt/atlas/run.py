"""``inputopt atlas``: every unit of some layers, visualized (sweeps), with its dataset examples and quality
metrics, as a static web site in one folder. Resumable: every piece is a file, computed only when missing.

The folder (``atlas_dir``)::

    atlas.yaml                         what defines the results (refused if another atlas wrote it)
    index.html, site/                  the web site (rebuilt from the files below at every run)
    layers/<slug>/layer.json           the layer's name, shape, kind and units
    layers/<slug>/seed-<s>/            the sweep of the layer's units with seed s (inputopt sweep's folder)
    layers/<slug>/fit-seed-<s>.yaml    the inputopt fit config that reproduces any of its units
    layers/<slug>/examples/            examples.json (inputopt examples) and the crops: crops/<unit>-<rank>.png
                                       (top), crops/<unit>-bottom-<rank>.png, crops/<unit>-p<percentile>.png
    layers/<slug>/metrics.json         activation ratio, high-frequency energy, transfer, per unit
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor, nn
from torch.utils.data import Dataset, IterableDataset

from inputopt.atlas.config import (
    AtlasExamples,
    AtlasLayer,
    AtlasMetrics,
    AtlasVisualization,
    crop_name,
    full_class_path,
    layer_slug,
    resolve_unit_names,
)
from inputopt.problem import Problem
from inputopt.results import file_name, read_record

__all__ = ["Atlas", "atlas_main", "RECORD"]

#: The file of an atlas folder that records what defines its results.
RECORD = "atlas.yaml"

_QUIET = dict(logger=False, enable_model_summary=False, enable_checkpointing=False, enable_progress_bar=False)


def _as(cls: type, value: Any) -> Any:
    return cls(**value) if isinstance(value, Mapping) else value


def _write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file, so that the file exists only complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    partial.replace(path)


def _is_rank_zero() -> bool:
    from lightning.pytorch.utilities import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


class Atlas:
    """An atlas of a network: for every unit of ``layers``, its visualization(s), its dataset examples (the
    top-``k``, the bottom-``k`` and one at each of some percentiles of its activations: crops with the receptive
    field marked) and its quality metrics, and a static web site
    (``index.html``) that opens from the file system.

    :meth:`run` computes what is missing (a sweep per layer and seed through :class:`~inputopt.FeatureSweep`
    and :class:`~inputopt.SaveSweep`, the examples through
    :class:`~inputopt.runners.examples.DatasetExamples`, the metrics through the functional twins of
    :mod:`inputopt.metrics`) and rebuilds the site from the files. An interrupted atlas resumes: run it
    again. A folder that holds another atlas configuration is refused, naming the differences.

    Args:
        problem: the :class:`~inputopt.problem.Problem` of every visualization, without an objective (the atlas
            gives each layer its own): the network (a name, a ``NetworkSpec`` or an ``nn.Module``, for which no fit
            command reproduces the units), the priors, the parameterization, the transforms and the seed (the
            default of ``visualization.seeds``); or its config, a ``problem:`` block.
        layers: the layers (:class:`AtlasLayer` or its fields as a dict).
        atlas_dir: the folder of the atlas.
        image_shape: ``(C, H, W)`` of the images (default: the named network's own).
        visualization: how the units are optimized (:class:`AtlasVisualization`: optimizer, steps, seeds).
        examples: the data set of the dataset examples (:class:`AtlasExamples`).
        metrics: the quality metrics' settings (:class:`AtlasMetrics`).
        trainer: ``lightning.pytorch.Trainer`` arguments of the sweeps and examples (``accelerator``,
            ``devices``, ``strategy``, ``precision``).
        title: the site's title (default: the network's name).
        progress: progress bars of the sweeps.
        checks: run the :doc:`visualization checks </trust>` on every layer's first seed, with these arguments of
            :class:`~inputopt.callbacks.visualization_checks.VisualizationChecks` (``natural``,
            ``transfer_network``, ``checks``, ``thresholds``, ...; ``{}``: its defaults); the site shows a badge
            per unit. ``None``: no checks (a layer folder that has a ``checks.json`` still shows it).

    Example:
        >>> from inputopt.priors import MultiScaleEdgeEnergy
        >>> from inputopt.problem import Problem
        >>> atlas = Atlas(Problem("digits", priors=[MultiScaleEdgeEnergy(0.3)]), [AtlasLayer(None, units=[0, 1])],
        ...               "results/atlas_doc",
        ...               visualization=AtlasVisualization(steps=5),
        ...               examples=AtlasExamples({"class_path": "inputopt.data.Digits",
        ...                                       "init_args": {"limit": 50}}, k=3))
        >>> times = atlas.run()  # doctest: +SKIP
    """

    def __init__(
        self,
        problem: Problem | Mapping[str, Any],
        layers: Sequence[AtlasLayer | Mapping[str, Any]],
        atlas_dir: str = "results/atlas",
        image_shape: Sequence[int] | None = None,
        visualization: AtlasVisualization | Mapping[str, Any] = AtlasVisualization(),
        examples: AtlasExamples | Mapping[str, Any] = AtlasExamples(),
        metrics: AtlasMetrics | Mapping[str, Any] = AtlasMetrics(),
        trainer: Mapping[str, Any] | None = None,
        title: str | None = None,
        progress: bool = True,
        checks: Mapping[str, Any] | None = None,
    ) -> None:
        from inputopt.networks import default_image_shape

        if isinstance(problem, Mapping):  # its components' short names (PixelImage), as a config spells them
            problem = {**problem, **{key: full_class_path(problem[key]) for key in ("objective", "param")
                                     if isinstance(problem.get(key), Mapping)},
                       **{key: [full_class_path(c) if isinstance(c, Mapping) else c for c in problem[key]]
                          for key in ("priors", "transforms") if isinstance(problem.get(key), list)}}
        problem = Problem.of(problem)
        if problem.objective is not None:
            raise ValueError(f"an atlas gives every layer its own objective (ChannelSum or UnitActivation of its "
                             f"units): leave the problem's objective out, got {problem.objective!r}")
        self.atlas_dir = Path(atlas_dir)
        self.visualization = _as(AtlasVisualization, visualization)
        self.examples = _as(AtlasExamples, examples)
        self.metrics = _as(AtlasMetrics, metrics)
        self.trainer = dict(trainer or {})
        bad = sorted(set(self.trainer) & {"logger", "callbacks", "max_steps", "default_root_dir"})
        if bad:
            raise ValueError(f"trainer options {bad} are set by the atlas itself; the ones that apply are devices, "
                             f"accelerator, strategy, precision, num_nodes")
        self.progress = progress
        if checks is not None:
            from inputopt.callbacks.visualization_checks import VisualizationChecks

            if not isinstance(checks, Mapping) or {"dirpath", "verbose"} & set(checks):
                raise ValueError(f"checks must be a mapping of VisualizationChecks arguments (not dirpath or verbose, "
                                 f"which the atlas sets), got {checks!r}")
            VisualizationChecks(**checks)  # its own checks of the arguments, now
        self.checks = None if checks is None else dict(checks)
        self.name = problem.network_name or type(problem.network).__name__
        self.title = title  # None: the site names it after the network (as --site_only does)
        if image_shape is None:
            image_shape = default_image_shape(problem.network_name) if problem.network_name else None
            if image_shape is None:
                raise ValueError("image_shape (C, H, W) is needed: the network's own input shape is not known")
        self.image_shape = [int(s) for s in image_shape]
        vis = self.visualization
        self.seeds = [problem.seed] if vis.seeds is None else list(vis.seeds)
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"visualization.seeds must be distinct seeds, at least one, got {vis.seeds!r}")
        self.optimizer = full_class_path(vis.optimizer) if vis.optimizer else None
        self.dataset = full_class_path(self.examples.dataset)

        self.problem = problem.replace(seed=self.seeds[0])  # its network: the layers, the examples, the metrics
        self._net = self.problem.network
        self._normalize = self.problem.normalize
        self.layers = [self._layer_info(layer) for layer in self._expand([_as(AtlasLayer, layer) for layer in layers])]
        if not self.layers:
            raise ValueError("give at least one layer")
        slugs = [info["slug"] for info in self.layers]
        if len(set(slugs)) != len(slugs):
            raise ValueError(f"layers {[info['name'] for info in self.layers]} repeat a layer")

    # -- the layers ---------------------------------------------------------------------------------
    def _expand(self, layers: list[AtlasLayer]) -> list[AtlasLayer]:
        """Layers whose name is a pattern (``*``, ``?``, ``[...]``, as :mod:`fnmatch`) become every layer of the
        network it matches, in the order of ``named_modules()``, each with the pattern's settings."""
        import fnmatch

        names = [name for name, _ in self._net.named_modules() if name]
        expanded = []
        for layer in layers:
            if layer.name is None or not any(c in layer.name for c in "*?["):
                expanded.append(layer)
                continue
            matches = [name for name in names if fnmatch.fnmatchcase(name, layer.name)]
            if not matches:
                raise ValueError(f"layer pattern {layer.name!r} matches no layer of {self.name} (`inputopt layers "
                                 f"{self.name}` lists them)")
            expanded += [dataclasses.replace(layer, name=name) for name in matches]
        return expanded

    @torch.no_grad()
    def _activations(self, images: Tensor, layer: str | None, network: nn.Module | None = None) -> Tensor:
        from inputopt.capture import OUTPUT, capture_activations

        x = images.float()
        if self._normalize is not None:
            x = self._normalize(x)
        key = OUTPUT if layer is None else layer
        return capture_activations(network or self._net, x, [key])[key]

    def _layer_info(self, layer: AtlasLayer) -> dict[str, Any]:
        if layer.name is not None and ("/" in layer.name or "\\" in layer.name):
            raise ValueError(f"layer {layer.name!r}: a name with '/' or '\\' cannot name the sweep's files")
        activation = self._activations(torch.zeros(1, *self.image_shape), layer.name)
        if activation.ndim not in (2, 4):
            raise ValueError(f"layer {layer.name!r} outputs {tuple(activation.shape)}; an atlas needs (B, C, H, W) "
                             f"(a unit is a channel) or (B, F) (a unit is a feature)")
        count = activation.shape[1]
        units = list(range(count)) if layer.units == "all" else list(layer.units)
        if not units or not all(isinstance(u, int) and not isinstance(u, bool) and 0 <= u < count for u in units):
            raise ValueError(f"layer {layer.name!r}: units must be ints in [0, {count}) or 'all', got {layer.units!r}")
        if len(set(units)) != len(units):
            raise ValueError(f"layer {layer.name!r}: units {units} repeat some")
        height, width = self.image_shape[1:]
        for what, value in (("crop_size", layer.crop_size), ("context", layer.context)):
            if value is not None and not 1 <= value <= min(height, width):
                raise ValueError(f"layer {layer.name!r}: {what} must be in [1, {min(height, width)}] pixels, "
                                 f"got {value}")
        kind = "channel" if activation.ndim == 4 else "feature"
        crop = layer.crop_size if kind == "channel" else None
        context = layer.context if kind == "channel" else None
        if crop is not None and context is not None:
            context = max(crop, context)
        display = layer.display or self.visualization.display
        if display not in ("std", "clamp"):
            raise ValueError(f"layer {layer.name!r}: display must be 'std' or 'clamp', got {display!r}")
        names = resolve_unit_names(layer.unit_names, count)
        return {"name": layer.name, "slug": layer_slug(layer.name), "kind": kind,
                "shape": list(activation.shape[1:]), "units": units, "crop_size": crop, "context": context,
                "display": display, "unit_names": None if names is None else {u: names[u] for u in units}}

    def _objective(self, info: Mapping[str, Any], units: Any) -> dict[str, Any]:
        if info["kind"] == "channel":
            return {"class_path": "inputopt.objectives.activation.ChannelSum",
                    "init_args": {"layer": info["name"], "channel": units}}
        return {"class_path": "inputopt.objectives.activation.UnitActivation",
                "init_args": {"layer": info["name"], "unit": units}}

    # -- the record -----------------------------------------------------------------------------------
    def record(self) -> dict[str, Any]:
        """Everything that defines the atlas' results but its layers' units, as plain data (``atlas.yaml``)."""
        problem = {key: value for key, value in self.problem.config().items() if key not in ("objective", "seed")}
        vis = self.visualization
        return json.loads(json.dumps({
            "problem": problem, "image_shape": self.image_shape,
            "visualization": {"optimizer": self.optimizer, "steps": vis.steps, "seeds": self.seeds,
                              "display": vis.display},
            "examples": {"dataset": self.dataset, "k": self.examples.k, "bottom": self.examples.bottom,
                         "percentiles": self.examples.percentiles},
            "metrics": {"transfer_networks": list(self.metrics.transfer_networks),
                        "high_frequency_cutoff": self.metrics.high_frequency_cutoff},
            "layers": {info["slug"]: {"name": info["name"], "crop_size": info["crop_size"],
                                      "context": info["context"], "display": info["display"]}
                       for info in self.layers},
        }))

    def _open_folder(self) -> None:
        """Check (or start) the folder's record: refuse another configuration; new layers are added."""
        from inputopt.runners.sweep import record_differences

        path = self.atlas_dir / RECORD
        record = self.record()
        if path.is_file():
            old = read_record(path) or {}
            old_layers = old.pop("layers", {}) or {}
            new_layers = record.pop("layers")
            # an atlas from before the bottom and percentile examples were recorded: they are this run's (its
            # examples.json lacks them, so its examples are found again)
            recorded = old.get("examples") if isinstance(old.get("examples"), dict) else {}
            missing = [key for key in ("bottom", "percentiles") if recorded and key not in recorded]
            for key in missing:
                recorded[key] = record["examples"][key]
            differences = record_differences(old, record) + record_differences(
                {f"layers.{k}": v for k, v in old_layers.items() if k in new_layers},
                {f"layers.{k}": v for k, v in new_layers.items() if k in old_layers})
            if differences:
                raise ValueError(f"{self.atlas_dir} holds another atlas configuration; this one differs in\n  "
                                 + "\n  ".join(differences) + f"\n(values: recorded in {path} -> this run). Use "
                                 f"another atlas_dir, or the configuration of {path}.")
            record["layers"] = {**old_layers, **new_layers}
            if record["layers"] == old_layers and not missing:
                return
        elif (self.atlas_dir / "layers").is_dir() and any((self.atlas_dir / "layers").iterdir()):
            raise ValueError(f"{self.atlas_dir / 'layers'} holds results but {path} is missing, so their "
                             f"configuration is unknown; use another atlas_dir")
        _write_text(path, "# What defines this atlas' results (inputopt atlas); its layers' units may grow\n"
                    + yaml.safe_dump(record, sort_keys=False))

    def fit_config(self, info: Mapping[str, Any], seed: int) -> dict[str, Any] | None:
        """The ``inputopt fit`` config that reproduces the units of a layer with ``seed`` (``None`` for a
        network given as a module)."""
        if self.problem.network_name is None:
            return None
        vis = self.visualization
        problem = {**self.problem.config(), "objective": self._objective(info, "all"), "seed": seed}
        model = {"problem": {k: v for k, v in problem.items() if v not in (None, [])}, "image_shape": self.image_shape}
        if self.optimizer is not None:
            model["optimizer"] = self.optimizer
        callbacks = [{"class_path": "inputopt.callbacks.images.SaveImages",
                      "init_args": {"dirpath": f"reproduced/{info['slug']}/seed-{seed}", "display": info["display"]}}]
        return {"seed_everything": seed,
                "trainer": {"max_steps": vis.steps, "logger": False, "enable_checkpointing": False,
                            "callbacks": callbacks},
                "model": {k: v for k, v in model.items() if v is not None}}

    def _write_layer_files(self) -> None:
        for info in self.layers:
            folder = self.atlas_dir / "layers" / info["slug"]
            old = folder / "layer.json"
            units = info["units"]
            names = info["unit_names"]
            if old.is_file():  # the units of every run into this folder
                before = read_record(old)
                done = before.get("units", [])
                units = done + [u for u in units if u not in done]
                names = {**{int(u): n for u, n in (before.get("unit_names") or {}).items()}, **(names or {})} or None
            _write_text(old, json.dumps({**info, "units": units, "seeds": self.seeds,
                                         "network": self.name, "unit_names": names}, indent=1) + "\n")
            for seed in self.seeds:
                config = self.fit_config(info, seed)
                if config is not None:
                    argument = "channel" if info["kind"] == "channel" else "unit"
                    _write_text(folder / f"fit-seed-{seed}.yaml",
                                f"# Reproduces the units of layer {info['name']!r} of the atlas, seed {seed}: from "
                                f"the atlas folder,\n#   inputopt fit --config layers/{info['slug']}/fit-seed-{seed}"
                                f".yaml --model.problem.objective.init_args.{argument} '[UNIT]'\n"
                                + yaml.safe_dump(config, sort_keys=False))

    # -- the steps ------------------------------------------------------------------------------------
    def _trainer(self, callbacks: list) -> Any:
        from lightning.pytorch import Trainer

        from lightning.pytorch.accelerators import CPUAccelerator

        from inputopt.commands.common import check_process_count

        trainer = Trainer(**{**self.trainer, **_QUIET, "callbacks": callbacks})
        check_process_count("cpu" if isinstance(trainer.accelerator, CPUAccelerator) else "other", trainer.num_devices)
        return trainer

    def visualize(self) -> None:
        """Run the sweep of every layer and seed (the units with a file are skipped)."""
        from inputopt import FeatureSweep, SaveSweep

        vis = self.visualization
        for info in self.layers:
            for seed in self.seeds:
                problem = self.problem.replace(objective=self._objective(info, info["units"]), seed=seed)
                sweep = FeatureSweep(problem, self.image_shape, self.optimizer, vis.steps, vis.units_per_batch)
                folder = self.atlas_dir / "layers" / info["slug"] / f"seed-{seed}"
                units = folder / "units"
                check = self.checks is not None and seed == self.seeds[0] and not (folder / "checks.json").is_file()
                if units.is_dir() and all((units / f"{file_name(n)}.pt").is_file() for n in sweep.image_names) \
                        and (folder / "grid.png").is_file() and not check:
                    continue  # done: no Trainer (a second process would start for nothing)
                callbacks = [SaveSweep(folder, info["display"], progress=self.progress and _is_rank_zero())]
                if check:  # a finished sweep is checked from its files, without optimizing again
                    from inputopt.callbacks.visualization_checks import VisualizationChecks

                    callbacks.append(VisualizationChecks(**self.checks, dirpath=folder, verbose=False))
                self._trainer(callbacks).test(sweep, verbose=False)

    def find_examples(self) -> None:
        """Find the dataset examples of every layer's units (a layer whose ``examples.json`` covers its units and
        the examples' settings is skipped) and write their crops."""
        from inputopt._config import instantiate
        from inputopt import DatasetExamples, SaveDatasetExamples

        dataset = None
        for info in self.layers:
            folder = self.atlas_dir / "layers" / info["slug"] / "examples"
            path = folder / "examples.json"
            results = read_record(path) if path.is_file() else None
            if results is None or not set(info["units"]) <= set(results["units"]) or not self.examples.covers(results):
                dataset = dataset or instantiate(self.dataset, Dataset)
                units = info["units"] if results is None else sorted(set(results["units"]) | set(info["units"]))
                runner = DatasetExamples(self.problem.replace(objective=self._objective(info, units)), dataset, self.examples.k, bottom=self.examples.bottom,
                                         percentiles=self.examples.percentiles, batch_size=self.examples.batch_size,
                                         num_workers=self.examples.num_workers)
                self._trainer([SaveDatasetExamples(folder, picture=False)]).test(runner, verbose=False)
                results = read_record(path) if path.is_file() else runner.results
            if _is_rank_zero():
                dataset = self._write_crops(info, results, folder / "crops", dataset)

    def _write_crops(self, info: Mapping[str, Any], results: Mapping[str, Any], folder: Path, dataset: Any) -> Any:
        """Write the crops of the layer's units' examples that are missing: the top ones, and the bottom and
        percentile ones the results hold (file names: :func:`~inputopt.atlas.config.crop_name`)."""
        from PIL import Image

        from inputopt._config import instantiate

        todo = []  # (unit, file name, data-set index, box) of every crop not on disk yet
        for group in ("top", "bottom", "percentiles"):
            found = results if group == "top" else results.get(group)
            if found is None:
                continue
            quantiles = found.get("q")
            rows = dict(zip(results["units"], zip(found["indices"], found["boxes"])))
            for unit in info["units"]:
                for rank, (index, box) in enumerate(zip(*rows[unit])):
                    name = crop_name(unit, group, rank, quantiles[rank] if quantiles else None)
                    if index >= 0 and not (folder / name).is_file():
                        todo.append((name, index, box))
        if not todo:
            return dataset
        dataset = dataset or instantiate(self.dataset, Dataset)
        folder.mkdir(parents=True, exist_ok=True)
        wanted = {index for _, index, _ in todo}
        if isinstance(dataset, IterableDataset):  # streamed: one more pass, for the examples' images only
            from inputopt.runners.base import stream

            samples = dict(stream(dataset, True, wanted.__contains__))
        else:
            samples = {index: dataset[index] for index in wanted}
        for name, index, box in todo:
            sample = samples[index]
            image = (sample[0] if isinstance(sample, (tuple, list)) else sample).float()
            crop = marked_crop(image, box, info["crop_size"], info["context"])
            array = (crop.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
            partial = folder / f"{name}.partial"
            Image.fromarray(array).save(partial, format="PNG")
            partial.replace(folder / name)
        return dataset

    @torch.no_grad()
    def score(self) -> None:
        """Write every layer's ``metrics.json`` (per unit, the mean over seeds): the activation ratio, the
        high-frequency energy and, for the output layer with ``transfer_networks``, the transfer."""
        from inputopt.metrics import activation_ratio, high_frequency_energy, unit_scores
        from inputopt.networks import frozen_network

        transfer = [(name, frozen_network(name)) for name in self.metrics.transfer_networks]
        for info in self.layers:
            layer_dir = self.atlas_dir / "layers" / info["slug"]
            path = layer_dir / "metrics.json"
            old = read_record(path) if path.is_file() else {"units": {}}
            units = [u for u in info["units"] if str(u) not in old["units"]]
            if not units:
                continue
            examples = read_record(layer_dir / "examples" / "examples.json")
            maxima = dict(zip(examples["units"], (row[0] for row in examples["values"])))
            prefix = info["name"] or "output"
            sums: dict[int, dict[str, float]] = {u: {} for u in units}
            for seed in self.seeds:
                files = layer_dir / f"seed-{seed}" / "units"
                images = torch.stack([torch.load(files / f"{file_name(f'{prefix}-{u}')}.pt", weights_only=True) for u in units])
                scores = unit_scores(self._activations(images, info["name"]), units)[0].diagonal()
                best = torch.tensor([maxima[u] for u in units])
                values = {"activation_ratio": torch.where(best > 0, activation_ratio(scores, best.clamp_min(1e-12)),
                                                          torch.full_like(scores, float("nan"))),
                          "high_frequency_energy": high_frequency_energy(images, self.metrics.high_frequency_cutoff)}
                if info["name"] is None:
                    for name, network in transfer:
                        predicted = self._activations(images, None, network).argmax(1)
                        values[f"transfer/{name}"] = (predicted == torch.tensor(units)).float()
                for key, column in values.items():
                    for unit, value in zip(units, column.tolist()):
                        sums[unit][key] = sums[unit].get(key, 0.0) + value
            seeds = len(self.seeds)
            for unit in units:
                old["units"][str(unit)] = {key: (None if value != value else value / seeds)
                                           for key, value in sums[unit].items()}
            old["high_frequency_cutoff"] = self.metrics.high_frequency_cutoff
            _write_text(path, json.dumps(old, indent=1) + "\n")

    def run(self) -> dict[str, float]:
        """Compute what is missing and rebuild the site; returns the seconds spent per step
        (``visualizations``, ``examples``, ``metrics``, ``site``)."""
        from inputopt.atlas.site import build_site
        from inputopt.callbacks.checkpoints import RunLock

        # one atlas at a time in a folder (as a fit or a sweep): a second one fails before writing anything
        from inputopt.networks import frozen

        lock = RunLock(self.atlas_dir).acquire() if _is_rank_zero() else None
        give_back = frozen(self._net)  # a user's module is handed back as given
        give_back.__enter__()
        try:
            if _is_rank_zero():
                self._open_folder()
                self._write_layer_files()
            times = {}
            start = time.perf_counter()
            self.visualize()
            times["visualizations"] = time.perf_counter() - start
            start = time.perf_counter()
            self.find_examples()
            times["examples"] = time.perf_counter() - start
            if not _is_rank_zero():
                return times
            start = time.perf_counter()
            self.score()
            times["metrics"] = time.perf_counter() - start
            start = time.perf_counter()
            build_site(self.atlas_dir, title=self.title)
            times["site"] = time.perf_counter() - start
            return times
        finally:
            give_back.__exit__(None, None, None)
            if lock is not None:
                lock.release()


def marked_crop(image: Tensor, box: Sequence[int] | None, crop_size: int | None = None,
                context: int | None = None) -> Tensor:
    """An example as RGB: the ``context × context`` crop around a unit's receptive field ``box`` (``[top, left,
    bottom, right)`` in pixels, as :class:`~inputopt.runners.examples.DatasetExamples` gives it), with the box
    outlined in red (a ``crop_size`` square centred on it instead, when given; the line is ``context // 40``
    pixels wide, at least 1). ``context`` defaults to twice the box's side; the crop is shifted to stay inside
    the image. The whole image when there is no box (a feature, or a global field).

    Example:
        >>> crop = marked_crop(torch.zeros(1, 8, 8), [0, 0, 2, 2], context=4)
        >>> crop.shape, crop[:, 0, 0].tolist()   # the top-left cell's box, in red
        (torch.Size([3, 4, 4]), [1.0, 0.0, 0.0])
    """
    from inputopt.functional.receptive_field import crop_box

    rgb = image[:3] if image.shape[0] >= 3 else image[:1].expand(3, -1, -1)
    rgb = rgb.clamp(0, 1).clone()
    height, width = image.shape[-2:]
    if box is None or box[0] < 0 or list(box) == [0, 0, height, width]:
        return rgb
    top, left, bottom, right = crop_box(image, box, crop_size)
    side = context or min(2 * max(bottom - top, right - left), height, width)
    line = max(1, min(side // 40, max(1, min(bottom - top, right - left) // 4)))  # thicker for large crops
    red = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1)
    rgb[:, top:top + line, left:right] = red
    rgb[:, bottom - line:bottom, left:right] = red
    rgb[:, top:bottom, left:left + line] = red
    rgb[:, top:bottom, right - line:right] = red
    y, x, y2, x2 = crop_box(image, box, max(side, bottom - top, right - left))
    return rgb[:, y:y2, x:x2]


class _Chatter(logging.Filter):
    """Leaves out what every one of the atlas' Trainers would say again (GPU/TPU available, tips)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (" available: " in message or "💡" in message)


def _parser():
    from jsonargparse import ActionConfigFile, ArgumentParser

    def atlas(problem: Problem, layers: list[AtlasLayer], atlas_dir: str = "results/atlas",
              image_shape: list[int] | None = None, visualization: AtlasVisualization = AtlasVisualization(), examples: AtlasExamples = AtlasExamples(),
              metrics: AtlasMetrics = AtlasMetrics(), trainer: dict[str, Any] | None = None,
              title: str | None = None, progress: bool = True, checks: dict[str, Any] | None = None,
              allow_packages: list[str] | None = None) -> None:
        pass

    atlas.__doc__ = Atlas.__doc__  # the help of every argument

    from inputopt.commands.common import _one_line_errors, paths_are_paths

    parser = _one_line_errors(ArgumentParser)(prog="inputopt atlas", description="Visualize every unit of some layers, find their "
                            "dataset examples and score them, and write a static web site (index.html) into "
                            "atlas_dir. Resumable: run the same command again.")
    parser.add_argument("--config", action=ActionConfigFile, help="a YAML config (configs/digits_atlas.yaml)")
    parser.add_argument("--site_only", action="store_true", help="only rebuild the site from the files on disk")
    parser.add_function_arguments(atlas, fail_untyped=False)
    paths_are_paths(parser)
    return parser


def atlas_main(argv: Sequence[str]) -> dict[str, float]:
    """``inputopt atlas --config configs/digits_atlas.yaml``: run an :class:`Atlas`; prints where the time
    went (visualizations, examples, metrics, site).

    Example:
        >>> atlas_main(["--config", "configs/digits_atlas.yaml"])  # doctest: +SKIP
    """
    import warnings

    from inputopt.atlas.site import build_site

    from inputopt.commands.common import prepare_command

    prepare_command(argv)  # configs guarded, allow_packages allowed, before anything is parsed
    parser = _parser()
    config = parser.parse_args(list(argv))
    if config.site_only:
        start = time.perf_counter()
        pages = build_site(config.atlas_dir, title=config.title)
        print(f"inputopt atlas: rebuilt {len(pages)} pages in {time.perf_counter() - start:.2f} s: "
              f"{Path(config.atlas_dir) / 'index.html'}")
        return {"site": time.perf_counter() - start}
    init = parser.instantiate(config)
    kwargs = {k: v for k, v in vars(init).items() if k not in ("config", "site_only", "allow_packages")}
    for key in ("visualization", "examples", "metrics"):
        kwargs[key] = dataclasses.asdict(kwargs[key]) if dataclasses.is_dataclass(kwargs[key]) else kwargs[key]
    chatter = _Chatter()
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(chatter)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*across ranks is zero.*")
        atlas = Atlas(**kwargs)
        units = sum(len(info["units"]) for info in atlas.layers)
        start = time.perf_counter()
        times = atlas.run()
    logging.getLogger("lightning.pytorch.utilities.rank_zero").removeFilter(chatter)
    if _is_rank_zero():
        total = time.perf_counter() - start
        print(f"inputopt atlas: {units} units of {len(atlas.layers)} layers, {len(atlas.seeds)} "
              f"image(s) per unit, in {total:.1f} s")
        for step, seconds in times.items():
            print(f"  {step:<15}{seconds:8.2f} s  {100 * seconds / max(total, 1e-9):5.1f} %")
        print(f"open {atlas.atlas_dir / 'index.html'}")
    return times
