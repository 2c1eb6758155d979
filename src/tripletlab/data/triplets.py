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
from itertools import pairwise
from typing import Any

import numpy as np

from tripletlab.config import TRIPLET_RULES, TripletRule
from tripletlab.data.resumable import ResumableSampler, batch_bounds
from tripletlab.index import EmbeddingIndex

# Nearest negatives searched per anchor at first, the factor for those still without one, and
# the depth beyond which the rest are compared with every negative (measured on 54,000 x 128:
# 8 deep first took 4.8 to 5.0 s an epoch, 32 deep 5.3 s).
_FIRST_DEPTH = 8
_DEEPER = 8
_MAX_DEPTH = 512
# When more than this share of a round's anchors need a deeper one (an embedding early in
# training), the rest are compared with every negative at once: on 54,000 random 128-d
# vectors, 17.2 s against 32.8 s searching ever deeper (27.5 s: the all-pairs search).
_STILL_DEEP = 0.5
# Search results (anchors x depth), or distances (anchors x negatives), held at a time.
_BLOCK_ELEMENTS = 1 << 22


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
    """Negatives chosen by squared Euclidean distance in embedding space.

    Per class, an exact index of the other classes' items (`tripletlab.index`, FAISS) returns
    each anchor's nearest negatives in order, _FIRST_DEPTH of them, then _DEEPER times as
    many for the anchors whose positive lies beyond all of those; anchors still without one
    at _MAX_DEPTH, or when most of a round's anchors need another (an embedding early in
    training, or a collapsed one), are compared with every negative, in blocks. Memory stays
    within _BLOCK_ELEMENTS results at a time.

    Args:
        embeddings: (N, D) of all items.
        labels: (N,).
        anchors, positives: (A,) indices.
        rule: "semihard" (closest negative farther than the positive, else the farthest
            negative) or "hard" (closest negative). Of equal distances, the first item.
    Returns:
        (A,) indices of the negatives.
    """
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    anchors, positives = np.asarray(anchors), np.asarray(positives)
    chosen = np.empty(len(anchors), dtype=np.int64)
    sq = np.square(x).sum(1)
    # As the search computes distances, |a|^2 + |p|^2 - 2 a.p (float32 rounding aside).
    positive_dist = (
        sq[anchors] + sq[positives] - 2 * np.einsum("ij,ij->i", x[anchors], x[positives])
    )
    for label in np.unique(labels[anchors]):
        todo = np.flatnonzero(labels[anchors] == label)
        negatives = np.flatnonzero(labels != label)
        index = EmbeddingIndex(x.shape[1], "squared-L2", normalized=False)
        index.add(x[negatives], np.zeros(len(negatives), dtype=np.int64))  # ids: positions
        depth = 1 if rule == "hard" else _FIRST_DEPTH
        while len(todo) and depth <= min(_MAX_DEPTH, len(negatives)):
            left = []
            step = max(1, _BLOCK_ELEMENTS // depth)
            for start in range(0, len(todo), step):
                block = todo[start : start + step]
                dist, found = index.search(x[anchors[block]], k=depth)
                if rule == "hard":
                    chosen[block] = negatives[found[:, 0]]
                    continue
                farther = dist > positive_dist[block, None]  # (b, depth), nearest first
                has = farther.any(1)
                chosen[block[has]] = negatives[found[has, farther[has].argmax(1)]]
                left.append(block[~has])
            before, todo = len(todo), np.concatenate(left) if left else todo[:0]
            if len(todo) > _STILL_DEEP * before:  # most positives lie deep: compare with all
                break
            depth *= _DEEPER
        if len(todo):
            chosen[todo] = _exhaustive(x, sq, negatives, anchors[todo], positive_dist[todo])
    return chosen


def _exhaustive(
    x: np.ndarray, sq: np.ndarray, negatives: np.ndarray, anchors: np.ndarray, bound: np.ndarray
) -> np.ndarray:
    """Semi-hard negatives of anchors against every negative, in blocks of anchors: the
    closest farther than `bound` (their positive's distance), else the farthest; of equal
    distances the first. (A,) -> (A,)."""
    items, item_sq = x[negatives], sq[negatives]
    chosen = np.empty(len(anchors), dtype=np.int64)
    step = max(1, _BLOCK_ELEMENTS // len(negatives))
    for start in range(0, len(anchors), step):
        a = anchors[start : start + step]
        dist = item_sq[None, :] + sq[a, None] - 2 * (x[a] @ items.T)  # (b, negatives)
        farther = dist > bound[start : start + step, None]
        semihard = np.where(farther, dist, np.inf).argmin(1)
        farthest = dist.argmax(1)
        chosen[start : start + len(a)] = negatives[np.where(farther.any(1), semihard, farthest)]
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
        return len(batch_bounds(len(self.anchors), self.batch_size)) - 1

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
        for step, (start, stop) in enumerate(
            pairwise(batch_bounds(len(triplets), self.batch_size))
        ):
            if step < first:
                continue
            if self.mine_every and self.rule != "random" and step and step % self.mine_every == 0:
                triplets[start:] = self._generate(rng, triplets[start:, 0])
            yield triplets[start:stop]

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
