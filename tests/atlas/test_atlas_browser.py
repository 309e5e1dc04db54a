"""The atlas' pages in a real browser: headless Chromium from the system packages, driven by Playwright.

Skipped, with the reason, where Playwright or a Chromium binary is missing (``apt-get install -y chromium``
and ``pip install playwright``; ``.ci/run`` installs both).
"""

from __future__ import annotations

import json
import os
import shutil

import pytest

from inputopt.atlas import layer_slug
from tests.atlas._hostile import IMG, SCRIPT

playwright = pytest.importorskip("playwright.sync_api", reason="the browser tests need Playwright: pip install "
                                 "playwright (the browser itself comes from the system: apt-get install chromium)")
CHROMIUM = os.environ.get("INPUTOPT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("no Chromium binary (apt-get install -y chromium, or set INPUTOPT_CHROMIUM)", allow_module_level=True)

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
OUTPUT = layer_slug(None)


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


class Page:
    """A page that records console errors, page errors, dialogs and every request that is not a local file."""

    def __init__(self, browser) -> None:
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.errors: list[str] = []
        self.remote: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("requestfailed", lambda r: self.errors.append(f"failed: {r.url}"))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.route("**/*", self._route)

    def _route(self, route) -> None:
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            self.remote.append(route.request.url)
            route.abort()

    def open(self, url: str) -> None:
        self.page.goto(url)
        self.page.wait_for_load_state("load")

    def check(self) -> int:
        """No console error, nothing remote, no dialog, every image loaded; returns the number of images."""
        # lazy images load when they come near the view: load them all, then wait for each to load or fail
        sizes = self.page.eval_on_selector_all("img", """async imgs => {
            imgs.forEach(i => { i.loading = "eager"; });
            await Promise.all(imgs.map(i => i.complete ? null : new Promise(r => { i.onload = i.onerror = r; })));
            return imgs.map(i => [i.getAttribute("src"), i.complete, i.naturalWidth]);
        }""")
        missing = [src for src, complete, width in sizes if not complete or width == 0]
        assert not missing, f"images that did not load: {missing}"
        assert not self.errors, self.errors
        assert not self.remote, f"requests off the file system: {self.remote}"
        assert not self.dialogs, self.dialogs
        return len(sizes)

    def units(self) -> list[int]:
        """The unit numbers of the visible cards, in page order."""
        return self.page.eval_on_selector_all(".card", "cs => cs.filter(c => !c.hidden).map(c => +c.dataset.unit)")


def test_index_loads(browser, built_atlas):
    page = Page(browser)
    page.open((built_atlas / "index.html").as_uri())
    assert page.check() == 4 + 3  # the thumbnail strips
    rows = page.page.eval_on_selector_all(".layer-row", "rs => rs.map(r => r.innerText)")
    assert "features.4" in rows[0] and "32 × 16 × 16" in rows[0] and "\t4\t" in rows[0]
    assert "output (classes)" in rows[1] and "\t3\t" in rows[1]
    page.page.click("text=features.4")
    assert page.page.url.endswith("/site/features.4.html")
    page.check()


def test_layer_page_sort_and_filter(browser, built_atlas):
    page = Page(browser)
    page.open((built_atlas / "site" / f"{OUTPUT}.html").as_uri())
    assert page.check() == 3 * (1 + 3)  # a visualization and 3 examples per unit
    assert page.units() == [0, 1, 2]
    metrics = json.loads((built_atlas / "layers" / OUTPUT / "metrics.json").read_text())["units"]
    ratio = {int(u): v["activation_ratio"] for u, v in metrics.items()}
    page.page.select_option("#sort-key", label="activation ratio")
    page.page.select_option("#sort-order", "desc")
    assert page.units() == sorted(ratio, key=lambda u: -ratio[u])
    page.page.select_option("#sort-order", "asc")
    assert page.units() == sorted(ratio, key=lambda u: ratio[u])
    page.page.fill("#filter", "0, 2")
    assert sorted(page.units()) == [0, 2]
    assert page.page.inner_text("#shown") == "2 of 3 units"
    page.page.fill("#filter", "1-2")
    assert sorted(page.units()) == [1, 2]
    page.page.fill("#filter", "x")  # not a unit list: marked, every card shown
    assert page.page.eval_on_selector("#filter", "e => e.classList.contains('invalid')")
    page.page.fill("#filter", "")
    assert sorted(page.units()) == [0, 1, 2]
    page.check()


def test_unit_page_links(browser, built_atlas):
    page = Page(browser)
    page.open((built_atlas / "site" / "features.4.html").as_uri())
    page.page.click("#unit-1 a.unit-link")
    assert page.page.url.endswith("/site/features.4/1.html")
    assert page.check() == 1 + 3 + 3 + 3  # the visualization; the top, bottom and percentile examples
    assert page.page.eval_on_selector_all("h3", "hs => hs.map(h => h.innerText)") == [
        "Top: the highest activations", "Bottom: the lowest activations", "Percentiles: across the activation range"]
    assert "inputopt fit --config layers/features.4/fit-seed-0.yaml" in page.page.inner_text("pre.command")
    page.page.click("a.next")
    assert page.page.url.endswith("/site/features.4/2.html")
    page.page.click("a.prev")
    page.page.click("a.prev")
    assert page.page.url.endswith("/site/features.4/0.html")
    assert page.page.locator("a.prev").count() == 0  # the first unit has no previous one
    page.page.click("a.back")
    assert page.page.url.endswith("/site/features.4.html#unit-0")
    assert page.units() == [0, 1, 2, 3]
    page.check()


def test_hostile_names_shown_as_text(browser, built_hostile_atlas):
    page = Page(browser)
    page.open((built_hostile_atlas / "index.html").as_uri())
    page.check()
    names = page.page.eval_on_selector_all("a.layer-link", "links => links.map(a => a.textContent)")
    assert names == [SCRIPT, IMG, "output (classes)"]
    page.open((built_hostile_atlas / "site" / f"{OUTPUT}.html").as_uri())
    assert page.page.inner_text("#unit-0 .unit-name") == "<b>bold</b>"
    page.check()
    for name in (SCRIPT, IMG):
        page.open((built_hostile_atlas / "site" / f"{layer_slug(name)}.html").as_uri())
        assert page.page.inner_text("h1") == name
        page.check()  # no dialog: the name's onerror never ran
        page.page.click("#unit-0 a.unit-link")
        assert page.page.inner_text("h1").startswith(name)
        page.check()


def test_layer_page_shows_sorts_and_filters_the_visualization_checks(browser, built_atlas, tmp_path):
    import torch

    from inputopt.atlas import build_site
    from inputopt.data import Digits
    from inputopt.metrics.visualization_checks import visualization_checks, visualization_checks_json
    from inputopt.zoo import digits_cnn

    folder = tmp_path / "atlas"
    shutil.copytree(built_atlas, folder)
    seed = folder / "layers" / "features.4" / "seed-0"
    units = [0, 1, 2, 3]
    images = torch.stack([torch.load(seed / "units" / f"features.4-{u}.pt") for u in units])
    results = visualization_checks(digits_cnn("a"), "features.4", units, images, Digits("test", limit=100),
                                   names=[f"features.4-{u}" for u in units])
    (seed / "checks.json").write_text(json.dumps(visualization_checks_json(results), default=float))
    build_site(folder)
    trusted = sorted(u for u, row in zip(units, results) if row.passed)
    passed = {u: sum(r.passed for r in row.results) for u, row in zip(units, results)}

    page = Page(browser)
    page.open((folder / "site" / "features.4.html").as_uri())
    badges = page.page.eval_on_selector_all(".card .badge", "bs => bs.map(b => b.innerText)")
    assert len(badges) == 4
    assert [b.startswith("✓") for b in badges] == [u in trusted for u in units]
    assert "path" in page.page.get_attribute("#unit-0 .badge", "title")  # every check's numbers on hover
    page.page.select_option("#sort-key", label="checks passed")
    page.page.select_option("#sort-order", "desc")
    assert page.units() == sorted(units, key=lambda u: (-passed[u], u))
    page.page.select_option("#checks-filter", "pass")
    assert sorted(page.units()) == trusted
    page.page.select_option("#checks-filter", "fail")
    assert sorted(page.units()) == [u for u in units if u not in trusted]
    page.page.select_option("#checks-filter", "all")
    assert sorted(page.units()) == units
    page.check()
    page.open((folder / "site" / "features.4" / "1.html").as_uri())
    assert "Can I trust this picture?" in page.page.inner_text("main")
    assert page.page.eval_on_selector_all("table.checks tr", "rs => rs.length") == len(results[1].results)
    page.check()
    # an atlas without checks shows no badge and no checks filter
    page.open((built_atlas / "site" / "features.4.html").as_uri())
    assert page.page.query_selector(".badge") is None and page.page.query_selector("#checks-filter") is None


def test_unit_page_shows_the_seeds_side_by_side(browser, tmp_path):
    """With several seeds, a unit's visualizations are in one row of its page, each captioned with its seed; an
    atlas without bottom or percentile examples shows the top row alone."""
    from tests.atlas.conftest import digits_atlas

    folder = tmp_path / "seeds"
    digits_atlas(folder, layers=[{"name": "features.0", "units": [0]}],
                 visualization={"steps": 2, "seeds": [0, 1, 2]},
                 examples={"dataset": {"class_path": "inputopt.data.Digits", "init_args": {"limit": 10}}, "k": 2,
                           "bottom": False, "percentiles": []}).run()
    page = Page(browser)
    page.open((folder / "site" / "features.0" / "0.html").as_uri())
    assert page.check() == 3 + 2
    boxes = page.page.eval_on_selector_all("img.vis-large", "is => is.map(i => { const r = i.getBoundingClientRect(); "
                                           "return [r.top, r.left, r.width]; })")
    assert len(boxes) == 3 and len({top for top, _, _ in boxes}) == 1  # one row
    assert all(a[1] + a[2] <= b[1] for a, b in zip(boxes, boxes[1:]))  # left to right, not overlapping
    captions = page.page.eval_on_selector_all("img.vis-large + figcaption", "cs => cs.map(c => c.innerText)")
    assert captions == ["seed 0", "seed 1", "seed 2"]
    assert page.page.eval_on_selector_all("h3", "hs => hs.map(h => h.innerText)") == ["Top: the highest activations"]
