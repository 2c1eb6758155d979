"""Explicit triplets for the triplet model, generated before each epoch.

- `random`: every image is an anchor once, with a random positive of its class and a random
  negative of a random other class.
- `semihard` / `hard` (offline mining with the current model's embeddings): the positive is
  random as above; the negative is, among all images of other classes, the closest one farther
  from the anchor than the positive (else the farthest), or the closest one, found through
  `tripletlab.index` (FAISS, exact).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from tripletlab.config import TRIPLET_RULES, TripletRule
from tripletlab.data.resumable import ResumableSampler
from tripletlab.index import nearest

# Nearest negatives searched per anchor at first, and the factor for those still without one.
_FIRST_DEPTH = 8
_DEEPER = 8


def check_rule(rule: str) -> TripletRule:
    """Return `rule` if valid, else raise a `ValueError` listing the valid ones."""
    if rule not in TRIPLET_RULES:
        raise ValueError(
            f"unknown triplet rule {rule!r}; expected one of {', '.join(TRIPLET_RULES)}"
        )
    return rule  # type: ignore[return-value]


def _usable_anchors(labels: np.ndarray) -> np.ndarray:
    """Items whose class has a second item and that have at least one other class."""
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) < 2:
        raise ValueError("triplets need at least two classes")
    return np.flatnonzero(np.isin(labels, classes[counts >= 2]))


def random_positives(
    labels: np.ndarray, anchors: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """For each anchor, a random other item of the same class. (A,) -> (A,)."""
    positives = np.empty(len(anchors), dtype=np.int64)
    for label in np.unique(labels[anchors]):
        members = np.flatnonzero(labels == label)
        picked = np.flatnonzero(labels[anchors] == label)
        # Position of each anchor among the members, shifted by 1..len-1: never itself.
        position = np.searchsorted(members, anchors[picked])
        shift = rng.integers(1, len(members), size=len(picked))
        positives[picked] = members[(position + shift) % len(members)]
    return positives


def random_negatives(
    labels: np.ndarray, anchors: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """For each anchor, a random item of a random other class. (A,) -> (A,)."""
    classes = np.unique(labels)
    members = {label: np.flatnonzero(labels == label) for label in classes}
    anchor_class = np.searchsorted(classes, labels[anchors])
    # A uniformly random other class: offset 1..C-1 from the anchor's class.
    other = classes[(anchor_class + rng.integers(1, len(classes), len(anchors))) % len(classes)]
    negatives = np.empty(len(anchors), dtype=np.int64)
    for label in classes:
        picked = np.flatnonzero(other == label)
        negatives[picked] = rng.choice(members[label], size=len(picked))
    return negatives


def mined_negatives(
    embeddings: np.ndarray,
    labels: np.ndarray,
    anchors: np.ndarray,
    positives: np.ndarray,
    rule: TripletRule,
) -> np.ndarray:
    """Negatives chosen by squared Euclidean distance in embedding space, searched through
    `tripletlab.index.nearest` (FAISS, exact).

    Per class, the anchors' nearest negatives come back in order, _FIRST_DEPTH of them, then
    _DEEPER times as many for the anchors whose positive lies beyond all of those, until every
    anchor has its negative or the search has covered all negatives.

    Args:
        embeddings: (N, D) of all items.
        labels: (N,).
        anchors, positives: (A,) indices.
        rule: "semihard" (closest negative farther than the positive, else the farthest
            negative) or "hard" (closest negative).
    Returns:
        (A,) indices of the negatives.
    """
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    anchors, positives = np.asarray(anchors), np.asarray(positives)
    chosen = np.empty(len(anchors), dtype=np.int64)
    positive_dist = np.square(x[anchors] - x[positives]).sum(1)  # (A,)
    for label in np.unique(labels[anchors]):
        todo = np.flatnonzero(labels[anchors] == label)
        negatives = np.flatnonzero(labels != label)
        depth = 1 if rule == "hard" else _FIRST_DEPTH
        while len(todo):
            depth = min(depth, len(negatives))
            dist, found = nearest(x[negatives], x[anchors[todo]], k=depth, squared=True)
            if rule == "hard":
                chosen[todo] = negatives[found[:, 0]]
                break
            farther = dist > positive_dist[todo, None]  # (t, depth), nearest first
            has = farther.any(1)
            first = farther.argmax(1)
            chosen[todo[has]] = negatives[found[has, first[has]]]
            if depth == len(negatives):  # no negative beyond the positive: the farthest
                chosen[todo[~has]] = negatives[found[~has, -1]]
                break
            todo, depth = todo[~has], depth * _DEEPER
    return chosen


def make_triplets(
    labels: np.ndarray,
    rule: TripletRule,
    rng: np.random.Generator,
    embeddings: np.ndarray | None = None,
    anchors: np.ndarray | None = None,
) -> np.ndarray:
    """Triplets (anchor, positive, negative) for the given anchors (default: every usable item).

    Returns:
        (A, 3) int64 indices.
    Raises:
        ValueError: a mined rule without embeddings, or fewer than two classes.
    """
    labels = np.asarray(labels)
    check_rule(rule)
    if anchors is None:
        anchors = _usable_anchors(labels)
    positives = random_positives(labels, anchors, rng)
    if rule == "random":
        negatives = random_negatives(labels, anchors, rng)
    else:
        if embeddings is None:
            raise ValueError(f"{rule!r} triplets need the embeddings of all items")
        negatives = mined_negatives(embeddings, labels, anchors, positives, rule)
    return np.stack([anchors, positives, negatives], axis=1).astype(np.int64)


class TripletBatchSampler(ResumableSampler):
    """Batches of explicit triplets, `(B, 3)` index arrays, regenerated every epoch.

    Mined rules call `embed_all()` (the current model on all training images) at the start of
    each epoch and, with `mine_every`, again every that many steps for the remaining anchors.
    """

    def __init__(
        self,
        labels: np.ndarray,
        batch_size: int,
        rule: str = "random",
        seed: int = 0,
        embed_all: Callable[[], np.ndarray] | None = None,
        mine_every: int | None = None,
    ) -> None:
        self.labels = np.asarray(labels)
        self.rule = check_rule(rule)
        if self.rule != "random" and embed_all is None:
            raise ValueError(f"{rule!r} triplets need a function that embeds the training images")
        if mine_every is not None and mine_every < 1:
            raise ValueError(f"mine_every must be at least 1, got {mine_every}")
        self.anchors = _usable_anchors(self.labels)
        self.batch_size = batch_size
        self.seed = seed
        self.embed_all = embed_all
        self.mine_every = mine_every
        self.epoch = 0
        self._live: tuple[np.ndarray, np.random.Generator] | None = None
        self._resume: tuple[np.ndarray, np.random.Generator] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Choose the triplets of `epoch`."""
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.anchors) // self.batch_size)

    def _generate(self, rng: np.random.Generator, anchors: np.ndarray) -> np.ndarray:
        embeddings = self.embed_all() if self.rule != "random" else None
        return make_triplets(self.labels, self.rule, rng, embeddings, anchors)

    def __iter__(self) -> Iterator[np.ndarray]:
        first, self._skip = self._skip, 0
        if self._resume is not None:
            (triplets, rng), self._resume = self._resume, None
        else:
            rng = np.random.default_rng([self.seed, self.epoch])
            triplets = self._generate(rng, rng.permutation(self.anchors))
        self._live = (triplets, rng)
        for step, start in enumerate(range(0, len(triplets), self.batch_size)):
            if step < first:
                continue
            if self.mine_every and self.rule != "random" and step and step % self.mine_every == 0:
                triplets[start:] = self._generate(rng, triplets[start:, 0])
            yield triplets[start : start + self.batch_size]

    def snapshot(self) -> dict[str, Any]:
        """The current epoch's triplets (T, 3) and the state of its NumPy generator, between
        two batches: mined triplets depend on the model of the epoch's start."""
        if self._live is None:
            raise ValueError("no epoch in progress")
        triplets, rng = self._live
        return {"triplets": triplets.copy(), "rng": rng.bit_generator.state}

    def resume_at(self, step: int, snapshot: dict[str, Any] | None = None) -> None:
        """Make the next iteration go on from batch `step` with the triplets and generator of
        a `snapshot` (mining again at the epoch's start would use another model).

        Raises:
            ValueError: a step other than 0 without a snapshot.
        """
        self._skip = step
        if step == 0:
            return
        if snapshot is None:
            raise ValueError("explicit triplets resume mid-epoch only from a snapshot")
        rng = np.random.default_rng()
        rng.bit_generator.state = snapshot["rng"]
        self._resume = (np.array(snapshot["triplets"], dtype=np.int64), rng)
