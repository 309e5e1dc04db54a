"""The atlas without a browser: its folder, resume, the record check, escaping, the reproduce command."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from inputopt.atlas import build_site, layer_slug, load_atlas, marked_crop
from tests.atlas._hostile import IMG, SCRIPT
from tests.atlas.conftest import digits_atlas

OUTPUT = layer_slug(None)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file of the site and every image it shows, by relative path."""
    files = [folder / "index.html", *sorted((folder / "site").rglob("*"))]
    files += sorted(p for p in (folder / "layers").rglob("*.png"))
    return {str(p.relative_to(folder)): p.read_bytes() for p in files if p.is_file()}


def test_smoke_folder_and_pages(built_atlas):
    atlas = load_atlas(built_atlas)
    assert [layer["name"] for layer in atlas["layers"]] == ["features.4", None]
    features, output = atlas["layers"]
    assert features["shape"] == [32, 16, 16] and output["shape"] == [10]
    assert [u["unit"] for u in features["units"]] == [0, 1, 2, 3]
    assert all(len(u["images"]) == 1 and len(u["examples"]) == 3 for u in features["units"] + output["units"])
    assert [u["name"] for u in output["units"]] == ["digit 0", "digit 1", "digit 2"]
    assert features["metrics"] == ["activation_ratio", "high_frequency_energy"]
    assert output["metrics"] == ["activation_ratio", "high_frequency_energy", "transfer/digits_b"]
    pages = sorted(p.relative_to(built_atlas).as_posix() for p in built_atlas.rglob("*.html"))
    assert pages == sorted(["index.html", f"site/{OUTPUT}.html", *[f"site/{OUTPUT}/{u}.html" for u in range(3)],
                            "site/features.4.html", *[f"site/features.4/{u}.html" for u in range(4)]])
    # every image a page shows is a file of the folder, by a relative link
    for page in built_atlas.rglob("*.html"):
        for src in re.findall(r'src="([^"]+)"', page.read_text()):
            assert not re.match(r"^[a-z]+:", src), src
            assert (page.parent / src).resolve().is_file(), (page, src)


def test_metrics_values(built_atlas):
    """The page's numbers are the functional metrics of the sweep's images."""
    from inputopt.metrics import high_frequency_energy, unit_scores
    from inputopt.networks import build_network

    metrics = json.loads((built_atlas / "layers" / "features.4" / "metrics.json").read_text())["units"]
    examples = json.loads((built_atlas / "layers" / "features.4" / "examples" / "examples.json").read_text())
    assert not (built_atlas / "layers" / "features.4" / "examples" / "examples.png").exists()  # pages show them
    image = torch.load(built_atlas / "layers" / "features.4" / "seed-0" / "units" / "features.4-2.pt")
    network = build_network("digits")
    acts = {}
    network.features[4].register_forward_hook(lambda m, i, o: acts.setdefault("x", o))
    network(image[None])
    score = unit_scores(acts["x"], [2])[0].item()
    assert metrics["2"]["activation_ratio"] == pytest.approx(score / examples["values"][2][0], rel=1e-5)
    assert metrics["2"]["high_frequency_energy"] == pytest.approx(high_frequency_energy(image[None]).item(), rel=1e-5)
    classes = json.loads((built_atlas / "layers" / OUTPUT / "metrics.json").read_text())["units"]
    b = build_network("digits_b")
    for unit in range(3):
        x = torch.load(built_atlas / "layers" / OUTPUT / "seed-0" / "units" / f"output-{unit}.pt")
        assert classes[str(unit)]["transfer/digits_b"] == float(b(x[None]).argmax().item() == unit)


def _row(page: str, group: str) -> list[float]:
    """The activations of a unit page's examples of one row (``top``, ``bottom``, ``percentiles``), in page order."""
    row = re.search(rf'<div class="large examples-row" id="{group}">(.*?)</div>', page, re.S)
    return [float(v) for v in re.findall(r'<figure data-value="([^"]+)"', row.group(1))] if row else []


def test_unit_page_shows_top_bottom_and_percentile_examples(built_atlas):
    """The unit page's three rows: the top examples (highest first), the bottom ones (lowest first) and one at each
    percentile (nearest rank) of the unit's activations over the data set, each a crop on disk."""
    import math

    from inputopt.data import Digits
    from inputopt.metrics import unit_scores
    from inputopt.networks import build_network

    network = build_network("digits")
    acts = {}
    network.features[4].register_forward_hook(lambda m, i, o: acts.setdefault("x", o))
    images = torch.stack([Digits("test", limit=60)[i][0] for i in range(60)])
    with torch.no_grad():
        network(images)
    for unit in (1, 3):
        scores = sorted(unit_scores(acts["x"], [unit])[0][:, 0].tolist())  # the 60 digits' activations, ascending
        page = (built_atlas / "site" / "features.4" / f"{unit}.html").read_text()
        top, bottom, percentiles = _row(page, "top"), _row(page, "bottom"), _row(page, "percentiles")
        assert top == pytest.approx(scores[::-1][:3], rel=1e-5)
        assert bottom == pytest.approx(scores[:3], rel=1e-5) and bottom == sorted(bottom)  # ascending
        assert percentiles == pytest.approx([scores[math.ceil(q / 100 * 60) - 1] for q in (99, 90, 50)], rel=1e-5)
        assert all(bottom[0] <= v <= top[0] for v in percentiles) and bottom[-1] < percentiles[-1] < top[-1]
        assert re.findall(r"<figcaption>(\d+th percentile):", page) == ["99th percentile", "90th percentile",
                                                                         "50th percentile"]
        assert "#1 lowest: " in page and ", class " in page  # each crop captioned with its activation and class
        for name in ("0", "bottom-0", "bottom-2", "p99", "p50"):
            assert f'src="../../layers/features.4/examples/crops/{unit}-{name}.png"' in page


def test_an_atlas_from_before_the_bottom_and_percentiles_gets_them(built_atlas, tmp_path):
    """A folder written before the bottom and percentile examples (its examples.json and atlas.yaml lack them) has
    its examples found again, and becomes the atlas of today, byte for byte; nothing is optimized again. A folder
    recorded with other bottom or percentile settings is refused."""
    import yaml

    folder = tmp_path / "old"
    shutil.copytree(built_atlas, folder)
    record = yaml.safe_load((folder / "atlas.yaml").read_text())
    del record["examples"]["bottom"], record["examples"]["percentiles"]
    (folder / "atlas.yaml").write_text(yaml.safe_dump(record, sort_keys=False))
    for path in (folder / "layers").glob("*/examples/examples.json"):
        old = json.loads(path.read_text())
        del old["bottom"], old["percentiles"]
        path.write_text(json.dumps(old))
    for path in (folder / "layers").glob("*/examples/crops/*-[bp]*.png"):
        path.unlink()
    build_site(folder)
    page = (folder / "site" / "features.4" / "1.html").read_text()
    assert _row(page, "top") and not _row(page, "bottom") and "Bottom:" not in page  # the site of the old folder
    units = sorted((folder / "layers").glob("*/seed-*/units/*.pt"))
    written = {path: path.stat().st_mtime_ns for path in units}
    digits_atlas(folder).run()
    assert snapshot(folder) == snapshot(built_atlas)
    assert yaml.safe_load((folder / "atlas.yaml").read_text())["examples"] == yaml.safe_load(
        (built_atlas / "atlas.yaml").read_text())["examples"]
    assert {path: path.stat().st_mtime_ns for path in units} == written
    examples = {"dataset": {"class_path": "inputopt.data.Digits", "init_args": {"split": "test", "limit": 60}}, "k": 3,
                "batch_size": 30}
    with pytest.raises(ValueError, match=r"examples.bottom: True -> False"):
        digits_atlas(folder, examples={**examples, "bottom": False}).run()
    with pytest.raises(ValueError, match=r"examples.percentiles.1: 90.0 -> 75.0"):
        digits_atlas(folder, examples={**examples, "percentiles": [99, 75, 50]}).run()
    with pytest.raises(ValueError, match=r"examples.percentiles must be distinct numbers in \[0, 100\]"):
        digits_atlas(folder, examples={**examples, "percentiles": [99, 101]})


def test_resume_gives_the_same_site(built_atlas, tmp_path):
    """An atlas interrupted anywhere (files missing) is completed by a rerun, and the site is the same."""
    folder = tmp_path / "copy"
    shutil.copytree(built_atlas, folder)
    before = snapshot(folder)
    kept = folder / "layers" / "features.4" / "seed-0" / "units" / "features.4-0.pt"
    kept_time = kept.stat().st_mtime_ns
    shutil.rmtree(folder / "site")
    (folder / "index.html").unlink()
    for name in ("features.4-2", "features.4-3"):  # a chunk in flight when it stopped
        (folder / "layers" / "features.4" / "seed-0" / "units" / f"{name}.pt").unlink()
        (folder / "layers" / "features.4" / "seed-0" / "images" / f"{name}.png").unlink()
    shutil.rmtree(folder / "layers" / OUTPUT / "examples")
    (folder / "layers" / "features.4" / "metrics.json").unlink()
    (folder / "layers" / "features.4" / "examples" / "crops" / "1-2.png").unlink()
    digits_atlas(folder).run()
    assert snapshot(folder) == before
    assert kept.stat().st_mtime_ns == kept_time  # done units are not recomputed


def test_crash_then_resume_equals_one_run(built_atlas, tmp_path, monkeypatch):
    """A run that crashes after its first chunk keeps that chunk; the rerun finishes it, and the atlas is
    the one of an uninterrupted run, byte for byte."""
    from lightning.pytorch import Callback

    from inputopt.atlas import Atlas

    class Crash(Callback):
        def on_test_batch_end(self, *args, **kwargs) -> None:
            raise RuntimeError("crash after the first chunk")

    make_trainer = Atlas._trainer
    monkeypatch.setattr(Atlas, "_trainer", lambda self, callbacks: make_trainer(self, [*callbacks, Crash()]))
    folder = tmp_path / "atlas"
    with pytest.raises(RuntimeError, match="crash after the first chunk"):
        digits_atlas(folder).run()
    assert sorted(p.name for p in (folder / "layers" / "features.4" / "seed-0" / "units").iterdir()) == [
        "features.4-0.pt", "features.4-1.pt"]  # the first chunk (units_per_batch 2), complete
    assert not (folder / "index.html").exists()
    monkeypatch.undo()
    digits_atlas(folder).run()
    assert snapshot(folder) == snapshot(built_atlas)


def test_site_rebuilt_from_files_alone(built_atlas, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(built_atlas, folder)
    before = snapshot(folder)
    shutil.rmtree(folder / "site")
    (folder / "index.html").unlink()
    build_site(folder)
    assert snapshot(folder) == before


def test_exception_other_config_refused(built_atlas, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(built_atlas, folder)
    record = (folder / "atlas.yaml").read_text()
    with pytest.raises(ValueError, match=r"another atlas configuration(.|\n)*visualization.steps: 5 -> 6"):
        digits_atlas(folder, steps=6).run()
    layers = [{"name": "features.4", "units": [0], "crop_size": 5}]
    with pytest.raises(ValueError, match=r"layers.features.4.crop_size: None -> 5"):
        digits_atlas(folder, layers=layers).run()
    assert (folder / "atlas.yaml").read_text() == record  # nothing written
    # the same configuration with another layer is the same atlas, grown; the other layers are not recomputed
    def written():  # when each file of the existing layers was written (a recomputed file is written again)
        return {p: p.stat().st_mtime_ns for p in (folder / "layers").rglob("*") if p.is_file() and p.name != "layer.json"}

    others = written()
    digits_atlas(folder, layers=[{"name": "features.0", "units": [1]}]).run()
    assert [layer["name"] for layer in load_atlas(folder)["layers"]] == ["features.4", None, "features.0"]
    after = written()
    assert {p: after[p] for p in others} == others and any("features.0" in str(p) for p in after)


def test_a_layer_pattern_stands_for_every_layer_it_matches(tmp_path):
    atlas = digits_atlas(tmp_path, layers=[{"name": "features.?", "units": [0], "context": 16}, {"name": None}])
    assert [info["name"] for info in atlas.layers] == [f"features.{i}" for i in range(10)] + [None]
    assert all(info["context"] == 16 for info in atlas.layers[:10])
    with pytest.raises(ValueError, match="matches no layer"):
        digits_atlas(tmp_path, layers=[{"name": "blocks.?"}])


def test_exception_bad_settings(tmp_path):
    with pytest.raises(ValueError, match=r"units must be ints in \[0, 32\)"):
        digits_atlas(tmp_path, layers=[{"name": "features.4", "units": [32]}])
    with pytest.raises(ValueError, match="unknown layer .features.99."):
        digits_atlas(tmp_path, layers=[{"name": "features.99"}])
    with pytest.raises(ValueError, match="set by the atlas itself"):
        digits_atlas(tmp_path, trainer={"max_steps": 3})
    with pytest.raises(ValueError, match="class_path 'NoSuchPrior' names no class"):
        digits_atlas(tmp_path, problem={"network": "digits", "priors": [{"class_path": "NoSuchPrior"}]})
    with pytest.raises(ValueError, match="leave the problem's objective out"):
        digits_atlas(tmp_path, problem={"network": "digits", "objective": {"class_path": "ChannelSum", "init_args": {
            "layer": "features.4", "channel": 0}}})
    assert not any(tmp_path.iterdir())  # nothing written


def test_escaping_hostile_names(built_hostile_atlas):
    pages = list(built_hostile_atlas.rglob("*.html"))
    assert len(pages) == 1 + 3 + 4 + 4 + 3
    text = "".join(p.read_text().replace('<script src="atlas.js"></script>', "") for p in pages)
    assert "<script" not in text and "<img src=x" not in text  # the pages hold no script at all
    assert "&lt;script&gt;" in text and "&lt;img src=x onerror=alert(1)&gt;" in text
    assert "<b>" not in text and "&lt;b&gt;bold&lt;/b&gt;" in text and "a &amp; b" in text  # unit names
    names = [layer["name"] for layer in load_atlas(built_hostile_atlas)["layers"]]
    assert names == [SCRIPT, IMG, None]


def test_reproduce_command(built_atlas, tmp_path, monkeypatch):
    """The unit page's command gives the unit's image again."""
    from inputopt.cli import main

    page = (built_atlas / "site" / "features.4" / "2.html").read_text()
    command = re.search(r'<pre class="command"><code>(.*?)</code>', page).group(1)
    assert command == ("inputopt fit --config layers/features.4/fit-seed-0.yaml "
                       "--model.problem.objective.init_args.channel '[2]'")
    folder = tmp_path / "copy"
    shutil.copytree(built_atlas, folder)
    monkeypatch.chdir(folder)
    main(["fit", "--config", "layers/features.4/fit-seed-0.yaml", "--model.problem.objective.init_args.channel", "[2]",
          "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"])
    image = torch.load(folder / "reproduced" / "features.4" / "seed-0" / "input.pt")[0]
    expected = torch.load(folder / "layers" / "features.4" / "seed-0" / "units" / "features.4-2.pt")
    torch.testing.assert_close(image, expected)


def test_command_line(tmp_path, capsys):
    from inputopt.atlas import atlas_main

    config = tmp_path / "atlas.yaml"
    config.write_text(f"""
atlas_dir: {tmp_path / 'out'}
problem:
  network: digits
layers:
  - name: features.0
    units: [0, 1]
    crop_size: 3
visualization:
  steps: 2
examples:
  dataset: {{class_path: inputopt.data.Digits, init_args: {{limit: 20}}}}
  k: 2
trainer: {{accelerator: cpu}}
progress: false
""")
    times = atlas_main(["--config", str(config)])
    assert list(times) == ["visualizations", "examples", "metrics", "site"]
    out = capsys.readouterr().out
    assert "2 units of 1 layers" in out and re.search(r"site\s+[0-9.]+ s", out)
    index = (tmp_path / "out" / "index.html").read_text()
    assert "<title>digits atlas</title>" in index
    atlas_main(["--config", str(config), "--site_only", "--title", "Digits & co"])
    assert "<title>Digits &amp; co</title>" in (tmp_path / "out" / "index.html").read_text()
    (tmp_path / "out" / "index.html").unlink()
    atlas_main(["--config", str(config), "--site_only"])  # the title given last is kept
    assert "<title>Digits &amp; co</title>" in (tmp_path / "out" / "index.html").read_text()


def test_marked_crop_box_and_context():
    image = torch.zeros(1, 32, 32)
    crop = marked_crop(image, [27, 27, 32, 32], 8, 16)  # a field clipped at the corner, 8 px: shifted inside
    assert crop.shape == (3, 16, 16)
    red = (crop[0] == 1) & (crop[1] == 0)
    rows, cols = red.nonzero(as_tuple=True)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (8, 15, 8, 15)  # the 8x8 box at the corner
    assert marked_crop(image, None).shape == (3, 32, 32)
    assert marked_crop(image, [0, 0, 32, 32]).shape == (3, 32, 32)  # a global field: the whole image
    computed = marked_crop(image, [4, 6, 12, 14])  # the box itself; context twice its side
    assert computed.shape == (3, 16, 16)
    large = marked_crop(torch.zeros(3, 224, 224), [0, 0, 41, 41], 67, 112)  # a 2-pixel line
    assert large[0, :2, :67].eq(1).all() and large[0, 2, 2:65].eq(0).all() and large[0, 66, :67].eq(1).all()


def test_exception_folder_held_by_another_run(built_atlas, tmp_path):
    """Two atlases never write into one folder at once: the second fails before writing anything."""
    import os
    import subprocess
    import sys

    from inputopt.callbacks.checkpoints import RunLockedError

    folder = tmp_path / "copy"
    shutil.copytree(built_atlas, folder)
    before = snapshot(folder)
    script = ("import sys, time\nfrom inputopt.callbacks.checkpoints import RunLock\nRunLock(sys.argv[1]).acquire()\n"
              "print('held', flush=True)\ntime.sleep(120)\n")
    root = Path(__file__).resolve().parents[2]
    holder = subprocess.Popen([sys.executable, "-c", script, str(folder)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(root)})
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLockedError, match=rf"another run \(pid {holder.pid}\) is writing into"):
            digits_atlas(folder).run()
    finally:
        holder.kill()
        holder.wait()
    assert snapshot(folder) == before


def test_an_atlas_of_a_streamed_data_set(tmp_path):
    """The examples of an atlas from WebDataset tar shards (an IterableDataset): found in one pass, their crops
    read back by a second pass."""
    pytest.importorskip("webdataset")
    import io
    import tarfile

    from inputopt.data import Digits

    digits = Digits("test", limit=12)
    shard = tmp_path / "digits.tar"
    with tarfile.open(shard, "w") as tar:
        for index in range(len(digits)):
            image, label = digits[index]
            png = io.BytesIO()
            from PIL import Image

            Image.fromarray((image[0] * 255).round().byte().numpy()).save(png, format="PNG")
            for extension, data in (("png", png.getvalue()), ("cls", str(int(label)).encode())):
                info = tarfile.TarInfo(f"{index:04}.{extension}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    dataset = {"class_path": "inputopt.data.WebDataset", "init_args": {"urls": str(shard), "image_shape": [1, 32, 32]}}
    atlas = digits_atlas(tmp_path / "atlas", steps=2, layers=[{"name": "features.4", "units": [0, 1]}],
                         examples={"dataset": dataset, "k": 3, "batch_size": 5})
    atlas.run()
    examples = json.loads((tmp_path / "atlas" / "layers" / "features.4" / "examples" / "examples.json").read_text())
    assert all(0 <= i < 12 for row in examples["indices"] for i in row) and examples["field_size"] == [8, 8]
    crops = sorted(p.name for p in (tmp_path / "atlas" / "layers" / "features.4" / "examples" / "crops").glob("*.png"))
    assert crops == sorted(f"{u}-{name}.png" for u in (0, 1)  # top, bottom and percentile crops of each unit
                           for name in ("0", "1", "2", "bottom-0", "bottom-1", "bottom-2", "p99", "p90", "p50"))


def test_checks_run_on_every_layer_without_optimizing_again(built_atlas, tmp_path):
    """``checks:`` runs the visualization checks on each layer's first seed (a finished atlas is checked from its
    files: no unit is optimized again), and the site shows a badge per unit."""
    import json
    import shutil

    folder = tmp_path / "digits"
    shutil.copytree(built_atlas, folder)
    units = sorted((folder / "layers").glob("*/seed-*/units/*.pt"))
    before = {path: path.stat().st_mtime_ns for path in units}
    atlas = digits_atlas(folder, checks={"natural": "digits", "checks": ["strength", "high frequency"],
                                          "num_natural": 60})
    atlas.run()
    assert {path: path.stat().st_mtime_ns for path in units} == before  # nothing optimized again
    for info in atlas.layers:
        written = json.loads((folder / "layers" / info["slug"] / "seed-0" / "checks.json").read_text())
        assert [row["unit"] for row in written] == list(info["units"])  # one row of checks per unit
    for info in atlas.layers:  # each layer page offers the checks' filter: its units carry badges
        assert 'id="checks-filter"' in (folder / "site" / f"{info['slug']}.html").read_text()
    with pytest.raises(ValueError, match="which the atlas sets"):
        digits_atlas(tmp_path / "other", checks={"dirpath": "x"})
    with pytest.raises(ValueError, match="unknown checks"):
        digits_atlas(tmp_path / "other", checks={"checks": ["beauty"]})


def test_an_atlas_of_a_transformer_layer(tmp_path):
    """A token layer of the digits ViT: units are features, positions patch cells, examples cropped to the patch."""
    from inputopt.atlas import Atlas

    atlas = Atlas({"network": "digits_vit"}, [{"name": "blocks.3", "units": [0, 5]}], str(tmp_path / "vit"), image_shape=[1, 32, 32],
                  visualization={"steps": 2, "display": "clamp", "units_per_batch": 2},
                  examples={"dataset": {"class_path": "inputopt.data.Digits", "init_args": {"split": "test", "limit": 20}},
                            "k": 2, "batch_size": 20},
                  trainer={"accelerator": "cpu", "devices": 1}, progress=False)
    atlas.run()
    examples = json.loads((tmp_path / "vit" / "layers" / "blocks.3" / "examples" / "examples.json").read_text())
    assert examples["map_shape"] == [8, 8] and examples["field_size"] == [4, 4]  # 4x4 patches of 32x32 digits
    for positions, boxes in zip(examples["positions"], examples["boxes"]):
        for (row, col), box in zip(positions, boxes):
            assert box == [4 * row, 4 * col, 4 * row + 4, 4 * col + 4]
    assert (tmp_path / "vit" / "site" / "blocks.3.html").is_file()
