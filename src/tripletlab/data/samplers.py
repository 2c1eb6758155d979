"""Batch samplers: plain shuffled batches and P classes x K images (PK) batches, and
`build_sampler`, which picks the sampler of a run (explicit triplets included)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from itertools import pairwise

import numpy as np

from tripletlab.config import RunConfig
from tripletlab.data.resumable import ResumableSampler, batch_bounds
from tripletlab.data.triplets import TripletBatchSampler

log = logging.getLogger(__name__)


class ShuffleSampler(ResumableSampler):
    """Shuffled batches of `batch_size` indices over the data set, a new order every epoch.

    The last batch keeps the remainder, as `tf.data.Dataset.batch` does, except that a lone
    last image joins the batch before it (`batch_bounds`).
    """

    def __init__(self, num_items: int, batch_size: int, seed: int = 0) -> None:
        if batch_size < 2:
            raise ValueError(f"batch_size must be at least 2, got {batch_size}")
        self.num_items = num_items
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the order of `epoch` (each epoch's order depends only on seed and epoch)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(batch_bounds(self.num_items, self.batch_size)) - 1

    def __iter__(self) -> Iterator[np.ndarray]:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.num_items)
        bounds = batch_bounds(self.num_items, self.batch_size)
        return self._from_skip(order[a:b] for a, b in pairwise(bounds))


class PKSampler(ResumableSampler):
    """Batches of P classes x K images each, every image once per epoch as far as possible.

    Each class's images are shuffled and cut into groups of K; a short last group is topped up
    with other images of the same class (with repeats only when the class has fewer than K).
    Batches draw P classes at a time, favouring the classes with the most groups left so that
    all classes run out together. When fewer than P classes remain, batches use as many as there
    are (at least two); groups of a last lone class are dropped and counted in `dropped` (images,
    padding included).

    Args:
        labels: (N,) integer class ids.
        classes_per_batch: P.
        samples_per_class: K (at least 2, so that every anchor has a positive).
        seed: the order of epoch e depends only on (seed, e).
    """

    def __init__(
        self, labels: np.ndarray, classes_per_batch: int, samples_per_class: int, seed: int = 0
    ) -> None:
        if samples_per_class < 2:
            raise ValueError(f"samples_per_class (K) must be at least 2, got {samples_per_class}")
        if classes_per_batch < 2:
            raise ValueError(f"classes_per_batch (P) must be at least 2, got {classes_per_batch}")
        labels = np.asarray(labels)
        self.classes = np.unique(labels)
        if len(self.classes) < 2:
            raise ValueError("PK sampling needs at least two classes")
        self.members = [np.flatnonzero(labels == c) for c in self.classes]
        self.classes_per_batch = min(classes_per_batch, len(self.classes))
        self.samples_per_class = samples_per_class
        self.seed = seed
        self.epoch = 0
        self.dropped = 0
        self._cached_epoch: int | None = None
        self._cached: list[np.ndarray] = []

    def set_epoch(self, epoch: int) -> None:
        """Choose the order of `epoch`."""
        self.epoch = epoch

    def _groups(self, rng: np.random.Generator) -> list[list[np.ndarray]]:
        k = self.samples_per_class
        groups = []
        for members in self.members:
            order = rng.permutation(members)
            shortfall = -len(order) % k
            if shortfall:
                pool = np.setdiff1d(members, order[-(len(order) % k) :])
                replace = len(pool) < shortfall
                extra = rng.choice(pool if len(pool) else members, shortfall, replace=replace)
                order = np.concatenate([order, extra])
            groups.append(list(order.reshape(-1, k)))
        return groups

    def __len__(self) -> int:
        return len(self._epoch_batches())

    def __iter__(self) -> Iterator[np.ndarray]:
        return self._from_skip(self._epoch_batches())

    def _epoch_batches(self) -> list[np.ndarray]:
        """The batches of the current epoch, drawn once and reused by `len` and iteration."""
        if self._cached_epoch == self.epoch:
            return self._cached
        rng = np.random.default_rng([self.seed, self.epoch])
        groups = self._groups(rng)
        batches = []
        while True:
            remaining = np.array([len(g) for g in groups], dtype=np.float64)
            alive = np.flatnonzero(remaining)
            if len(alive) < 2:
                self.dropped = int(remaining.sum()) * self.samples_per_class
                break
            take = min(self.classes_per_batch, len(alive))
            chosen = rng.choice(alive, take, replace=False, p=remaining[alive] / remaining.sum())
            batches.append(np.concatenate([groups[c].pop() for c in chosen]))
        self._cached_epoch, self._cached = self.epoch, batches
        return batches


def build_sampler(
    config: RunConfig, labels: np.ndarray, embed_all: Callable[[], np.ndarray] | None = None
) -> ShuffleSampler | PKSampler | TripletBatchSampler:
    """The batch sampler of a run: explicit triplets in "triplets" mode, else the sampler
    named by `config.train.sampler` ("shuffle" or "pk").

    Args:
        config: the run config.
        labels: (N,) class ids of the training images.
        embed_all: () -> (N, D) embeddings of the training images with the current model, for
            offline mining of "semihard" / "hard" triplets.
    """
    train = config.train
    if train.mode == "triplets":
        return TripletBatchSampler(
            labels, train.batch_size, train.triplets, seed=train.seed, embed_all=embed_all,
            mine_every=train.mine_every,
        )  # fmt: skip
    if train.sampler == "pk":
        per_batch = train.batch_size // train.samples_per_class
        sampler = PKSampler(labels, per_batch, train.samples_per_class, seed=train.seed)
        size = sampler.classes_per_batch * sampler.samples_per_class
        if size != train.batch_size:
            why = ("the data has only " + str(len(sampler.classes)) + " classes"
                   if sampler.classes_per_batch < per_batch
                   else f"{train.batch_size} is not a multiple of K")  # fmt: skip
            log.warning("PK batches hold %d images (P %d x K %d), not train.batch_size %d: %s",
                        size, sampler.classes_per_batch, sampler.samples_per_class,
                        train.batch_size, why)  # fmt: skip
        return sampler
    return ShuffleSampler(len(labels), train.batch_size, seed=train.seed)
