"""Per-row randomness with named streams: every draw is keyed by ``(seed, stream, row key, occurrence)``.

A row's numbers never depend on the batch it shares, the process it runs on or the step a run resumed
from: only on the run's seed, the stream's name, the row's key (its unit, its data-set index) and an
occurrence count (a repeated key, a restart, a step). Two uses never share numbers, because each has a
stream of its own: the names are registered in :data:`STREAMS`, and a test checks that each is used in
one place only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["STREAMS", "RowRandom", "RowStream", "register_stream", "row_seed"]

#: Every stream's name and what it draws. A new use of randomness registers its own stream
#: (:func:`register_stream`); :meth:`RowRandom.stream` refuses a name that is not here.
STREAMS: dict[str, str] = {}

#: Streams whose seeds keep the derivation of earlier versions (no name in the hash), so that runs made
#: before streams existed reproduce bit for bit: a run's starting noise and its transforms' draws.
_UNNAMED = frozenset({"start", "transforms"})


def register_stream(name: str, description: str) -> str:
    """Declare a stream of random numbers (once per name) and return its name.

    Example:
        >>> register_stream("docs.example", "the numbers of this example")
        'docs.example'
        >>> register_stream("docs.example", "another use")
        Traceback (most recent call last):
        ...
        ValueError: stream 'docs.example' is already registered (the numbers of this example); give another use a stream of its own
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"a stream's name must be a non-empty string, got {name!r}")
    if name in STREAMS:
        raise ValueError(f"stream {name!r} is already registered ({STREAMS[name]}); give another use a stream of its "
                         f"own")
    STREAMS[name] = description
    return name


def row_seed(seed: int, key: int, occurrence: int = 0, stream: str = "start") -> int:
    """A 63-bit seed derived from ``(stream, seed, key, occurrence)``, stable across runs and platforms.

    Example:
        >>> row_seed(0, 7) == row_seed(0, 7) != row_seed(1, 7)
        True
        >>> row_seed(0, 7, stream="sphere.points") != row_seed(0, 7)
        True
    """
    text = f"{seed}:{key}:{occurrence}" if stream in _UNNAMED else f"{stream}:{seed}:{key}:{occurrence}"
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class RowStream:
    """One named stream of a :class:`RowRandom`: generators and draws per row key.

    Args:
        seed: the run's seed.
        name: a name registered in :data:`STREAMS`.

    Example:
        >>> stream = RowRandom(0).stream("start")
        >>> a = stream.normal([5, 9], (2,))
        >>> torch.equal(a[1], stream.normal([9], (2,))[0])  # a row does not depend on the batch
        True
    """

    def __init__(self, seed: int, name: str) -> None:
        self.seed = int(seed)
        self.name = name

    def __repr__(self) -> str:
        return f"RowStream(seed={self.seed}, name={self.name!r})"

    def seed_of(self, key: int, occurrence: int = 0) -> int:
        """The seed of ``(key, occurrence)`` in this stream."""
        return row_seed(self.seed, int(key), int(occurrence), self.name)

    def seeds(self, keys: Sequence[int]) -> list[int]:
        """One seed per row; a key repeated in ``keys`` gets its next occurrence, so repeated rows differ.

        Example:
            >>> a, b, c = RowRandom(0).stream("start").seeds([4, 4, 7])
            >>> a != b and c == RowRandom(0).stream("start").seeds([7])[0]
            True
        """
        seen: dict[int, int] = {}
        seeds = []
        for key in keys:
            key = int(key)
            occurrence = seen.get(key, 0)
            seen[key] = occurrence + 1
            seeds.append(self.seed_of(key, occurrence))
        return seeds

    def generator(self, key: int, occurrence: int = 0, device: torch.device | str = "cpu") -> torch.Generator:
        """A ``torch.Generator`` seeded by ``(key, occurrence)`` in this stream."""
        return torch.Generator(device=device).manual_seed(self.seed_of(key, occurrence))

    def generators(self, keys: Sequence[int], occurrence: int = 0,
                   device: torch.device | str = "cpu") -> list[torch.Generator]:
        """One generator per key, all at ``occurrence``."""
        return [self.generator(k, occurrence, device) for k in keys]

    def uniform(self, keys: Sequence[int], shape: Sequence[int], occurrence: int = 0,
                dtype: torch.dtype = torch.float32) -> Tensor:
        """``(len(keys), *shape)`` uniform numbers in [0, 1); row ``i`` from ``(keys[i], occurrence)`` only.

        Example:
            >>> u = RowRandom(0).stream("start").uniform([1, 2], (3,), occurrence=4)
            >>> u.shape, bool(((0 <= u) & (u < 1)).all())
            (torch.Size([2, 3]), True)
        """
        rows = [torch.rand(tuple(shape), generator=self.generator(k, occurrence), dtype=dtype) for k in keys]
        return torch.stack(rows) if rows else torch.empty(0, *shape, dtype=dtype)

    def normal(self, keys: Sequence[int], shape: Sequence[int]) -> Tensor:
        """``(len(keys), *shape)`` standard normal numbers; repeated keys get their next occurrence
        (:meth:`seeds`)."""
        rows = [torch.randn(tuple(shape), generator=torch.Generator().manual_seed(s)) for s in self.seeds(keys)]
        return torch.stack(rows) if rows else torch.empty(0, *shape)


class RowRandom:
    """The randomness of a run, in named streams: ``RowRandom(seed).stream("square.stripes")``.

    Every draw depends on ``(seed, stream name, row key, occurrence)`` only, so it is the same whatever
    batch, chunk, device or resume the row runs in, and two uses of randomness (each with its own
    registered stream) never share numbers.

    Args:
        seed: the run's seed.

    Example:
        >>> random = RowRandom(0)
        >>> stripes = random.stream("square.stripes").uniform([3], (4,))
        >>> sphere = random.stream("sphere.points").uniform([3], (4,))
        >>> torch.equal(stripes, sphere)
        False
        >>> random.stream("no.such")
        Traceback (most recent call last):
        ...
        ValueError: unknown random stream 'no.such'; register it first with inputopt.functional.random.register_stream (known: ...)
    """

    def __init__(self, seed: int = 0) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an int, got {seed!r}")
        self.seed = seed

    def __repr__(self) -> str:
        return f"RowRandom(seed={self.seed})"

    def stream(self, name: str) -> RowStream:
        """The stream ``name`` (registered in :data:`STREAMS`) of this run."""
        if name not in STREAMS:
            raise ValueError(f"unknown random stream {name!r}; register it first with "
                             f"inputopt.functional.random.register_stream (known: {', '.join(sorted(STREAMS))})")
        return RowStream(self.seed, name)


# The library's streams: each use of randomness has one, used in one place (tests/functional/test_random.py).
register_stream("start", "a run's starting images (noise, phases) per unit; its row seeds also key the transforms")
register_stream("transforms", "the robustness transforms' parameters per row seed and step")
register_stream("insert", "where and how an inserted patch or perturbation lands, per row seed and step")
register_stream("shared.validation", "the shared input's placement on each validation image")
register_stream("shared.order", "the order of the samples in each pass of a shared-input run")
register_stream("pgd.start", "PGD's random start in the eps-ball, per image")
register_stream("apgd.start", "APGD's random start on the eps-sphere, per image and restart")
register_stream("square.queries", "the Square attack's windows and signs, per image and query")
register_stream("square.stripes", "the Square attack's L-inf starting stripes, per image")
register_stream("fab.start", "FAB's random restarts around each image, per image and run")
register_stream("eot.draws", "the seeds of EOT's draws of a randomized model, per image (keyed by its values)")
register_stream("sphere.points", "the random-sphere check's points, per image")
