"""Split specs like TensorFlow Datasets': "train[:40%]", "train[40%:50%]", "test", "train[100:]".

A spec names a source split and an optional slice in percent or in items. Items are put in a
seeded random order first (the same for every spec of a run), so slices of a class-sorted
folder are mixed and a given seed always gives the same parts. Slices in percent are
stratified when the labels are known: each class is cut at the same percentages, so that a
10% part has 10% of every class.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

_SPEC = re.compile(r"^\s*(\w+)\s*(?:\[\s*([^:\]]*)\s*:\s*([^\]]*)\s*\])?\s*$")


@dataclass(frozen=True)
class SplitSpec:
    """A parsed spec: source split name and [start, stop) bounds (percent or items)."""

    source: str
    start: str
    stop: str

    @property
    def in_percent(self) -> bool:
        """Whether both bounds are percentages (or open)."""
        return all(not bound or bound.endswith("%") for bound in (self.start, self.stop))

    def indices(self, num_items: int, seed: int, labels: np.ndarray | None = None) -> np.ndarray:
        """The chosen item indices among `num_items`, sorted; cut in each class when `labels`
        (N,) are given (the spec must be `in_percent` then)."""
        if labels is not None:
            if not self.in_percent:
                raise ValueError("only percentages cut each class alike")
            return self._per_class(np.asarray(labels), seed)
        order = np.random.default_rng(seed).permutation(num_items)
        start = _bound(self.start, num_items, default=0)
        stop = _bound(self.stop, num_items, default=num_items)
        return np.sort(order[start:stop])

    def _per_class(self, labels: np.ndarray, seed: int) -> np.ndarray:
        chosen = []
        for position, label in enumerate(np.unique(labels)):
            # The same order of a class for every spec of a run: parts stay disjoint.
            order = np.random.default_rng([seed, position]).permutation(
                np.flatnonzero(labels == label)
            )
            start = _bound(self.start, len(order), default=0)
            stop = _bound(self.stop, len(order), default=len(order))
            chosen.append(order[start:stop])
        return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def _bound(text: str, num_items: int, default: int) -> int:
    if not text:
        return default
    if text.endswith("%"):
        value = Fraction(text[:-1])  # exact: "-10%" and "90%" cut a class at the same item
        if not -100 <= value <= 100:
            raise ValueError(f"percent out of range in split spec: {text}")
        return round(num_items * (value if value >= 0 else 100 + value) / 100)
    return int(text)


def parse_split(spec: str) -> SplitSpec:
    """Parse "name", "name[a:b]" with a, b like "40%", "-10%", "100" or empty.

    Raises:
        ValueError: a spec that does not have that form.
    """
    match = _SPEC.match(spec)
    if not match:
        raise ValueError(
            f"bad split spec {spec!r}; expected e.g. 'train', 'train[:40%]', 'train[40%:50%]'"
        )
    source, start, stop = match.group(1), match.group(2) or "", match.group(3) or ""
    for bound in (start, stop):
        if bound and not re.fullmatch(r"-?\d+(\.\d+)?%|-?\d+", bound):
            raise ValueError(f"bad bound {bound!r} in split spec {spec!r}")
    return SplitSpec(source, start, stop)


def stratified_split(
    labels: np.ndarray, fractions: tuple[float, ...], seed: int
) -> list[np.ndarray]:
    """Split indices into parts with the given fractions, the same share of every class in each.

    Returns:
        One sorted index array per fraction (the last part takes what rounding leaves).
    """
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in fractions]
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        # Cumulative shares snapped to 12 decimals: (0.7, 0.2, 0.1) ends its second part at
        # 0.9, as (0.8, 0.1, 0.1) does, not at 0.8999999999999999 (a class of 15: 13 not 14).
        bounds = np.round(np.round(np.cumsum(fractions), 12) * len(members)).astype(int)
        bounds[-1] = len(members)
        for part, (lo, hi) in enumerate(zip([0, *bounds[:-1]], bounds, strict=True)):
            parts[part].append(members[lo:hi])
    return [np.sort(np.concatenate(p)) for p in parts]
