"""RowRandom: per-row randomness in named streams, each stream used in one place."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest
import torch

import inputopt
from inputopt.functional.random import STREAMS, RowRandom, register_stream, row_seed

PACKAGE = Path(inputopt.__file__).parent
#: The run's row seeds: every runner derives them the same way (one use: "the start of row key k").
SHARED_BY_RUNNERS = {"start"}


class TestRowSeed:
    def test_pinned_values(self):
        # pinned: changing the derivation would silently change every published image of a run
        assert row_seed(0, 7) == 5193960593538024443
        assert row_seed(1, 7) == 8925789699699775711
        assert row_seed(0, 7, 1) == 4233164403313270811
        assert row_seed(42, 123) == 3876906348044515931

    def test_range_and_distinct(self):
        seeds = {row_seed(s, k, o) for s in range(3) for k in range(20) for o in range(2)}
        assert len(seeds) == 3 * 20 * 2
        assert all(0 <= s < 2**63 for s in seeds)


class TestStreams:
    def test_streams_never_share_numbers(self):
        # every (stream, key, occurrence) gets its own seed: no two streams draw the same numbers
        # the per-step streams ("transforms", "insert") are keyed by a row's seed (from "start"), as the code does
        row_seeds = RowRandom(0).stream("start").seeds(range(10))
        seeds = {}
        for name, key, occurrence in itertools.product(STREAMS, range(10), range(3)):
            if name in ("transforms", "insert"):
                seed = RowRandom(row_seeds[key]).stream(name).seed_of(occurrence)  # (row seed, step)
            else:
                seed = RowRandom(0).stream(name).seed_of(key, occurrence)
            seeds.setdefault(seed, []).append((name, key, occurrence))
        assert all(len(uses) == 1 for uses in seeds.values()), [u for u in seeds.values() if len(u) > 1]

    def test_each_stream_used_in_one_place(self):
        # walk the package: every stream named in the code is registered, and each is used in one place
        uses: dict[str, list[str]] = {}
        for path in PACKAGE.rglob("*.py"):
            if path.name == "random.py" and path.parent.name == "functional":
                continue  # where the streams are defined (its docstrings name them)
            code = "\n".join(line for line in path.read_text().splitlines() if ">>>" not in line)  # not doctests
            for match in re.finditer(r"""\.stream\(\s*["']([\w.]+)["']""", code):
                uses.setdefault(match.group(1), []).append(str(path.relative_to(PACKAGE)))
        assert set(uses) <= set(STREAMS), set(uses) - set(STREAMS)
        assert set(STREAMS) - {"docs.example"} <= set(uses), "a registered stream no code draws from"
        shared = {name: places for name, places in uses.items() if len(places) > 1 and name not in SHARED_BY_RUNNERS}
        assert not shared, shared

    def test_the_square_stripes_and_the_sphere_points_differ(self):
        # the collision of round 2: both drew from (seed, index, 1)
        a = RowRandom(0).stream("square.stripes").uniform([5], (16,))
        b = RowRandom(0).stream("sphere.points").uniform([5], (16,))
        assert not torch.equal(a, b)

    def test_rows_do_not_depend_on_the_batch(self):
        stream = RowRandom(3).stream("pgd.start")
        batch = stream.uniform([4, 9, 2], (5,), occurrence=2)
        for i, key in enumerate([4, 9, 2]):
            assert torch.equal(batch[i], stream.uniform([key], (5,), occurrence=2)[0])

    def test_the_start_stream_keeps_the_earlier_derivation(self):
        assert RowRandom(0).stream("start").seeds([7, 7]) == [row_seed(0, 7, 0), row_seed(0, 7, 1)]
        assert row_seed(0, 7, stream="start") == 5193960593538024443

    def test_exception(self):
        with pytest.raises(ValueError, match="unknown random stream 'nope'"):
            RowRandom(0).stream("nope")
        with pytest.raises(ValueError, match="already registered"):
            register_stream("start", "again")
        with pytest.raises(ValueError, match="seed must be an int"):
            RowRandom(0.5)
