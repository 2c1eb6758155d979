"""A gallery to index: the images of a run's data part, or of any data set, with their labels
and sources, embedded chunk by chunk so that memory stays bounded whatever its size."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tripletlab.config import DataConfig, RunConfig
from tripletlab.data import DATASETS, TITLES, ImageSet, run_data
from tripletlab.data.datasets import load_sources
from tripletlab.data.folder import scan_folder
from tripletlab.data.splits import stratified_split
from tripletlab.search.sources import decoded_chunks

SPLITS = ("train", "val", "test", "all")


@dataclass
class Gallery:
    """`count` images with labels (count,) and class names; `chunks` reads them."""

    labels: np.ndarray
    class_names: list[str]
    description: str
    memory: ImageSet | None = None  # images held in memory, or
    files: list[Path] | None = None  # files decoded as they are read

    @property
    def count(self) -> int:
        """How many images (files: some may turn out unreadable when read)."""
        return len(self.labels)

    def chunks(
        self, size: tuple[int, int], channels: int, chunk: int, positions: np.ndarray | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray, list[str], int]]:
        """Yields (images (n, H, W[, C]) uint8, labels (n,), n sources, files skipped) for
        `positions` (default all), in order, at most `chunk` at a time."""
        positions = np.arange(self.count) if positions is None else positions
        if self.memory is not None:
            sources = self.memory.sources
            for start in range(0, len(positions), chunk):
                part = positions[start : start + chunk]
                names = [""] * len(part) if sources is None else [str(s) for s in sources[part]]
                yield self.memory.images[part], self.memory.labels[part], names, 0
            return
        files = [self.files[p] for p in positions] if self.files is not None else []
        for images, kept, skipped in decoded_chunks(files, size, channels, chunk):
            chosen = positions[kept]
            sources = [str(self.files[p].resolve()) for p in chosen]
            yield images, self.labels[chosen], sources, skipped


def _same_dataset(config: RunConfig, dataset: str) -> bool:
    own = config.data.dataset
    if dataset == own:
        return True
    return (
        own not in DATASETS
        and dataset not in DATASETS
        and Path(own).expanduser().resolve() == (Path(dataset).expanduser().resolve())
    )


def open_gallery(
    config: RunConfig, dataset: str | None = None, split: str | None = None
) -> Gallery:
    """The images to index.

    `all`: every image of the data set, whatever the run's parts (the default for another
    data set than the run's). Otherwise, of the run's own data set: that part of the run's
    data as training cut it (train, the default, val or test), held in memory as training
    held it; of another: MNIST's or Fashion-MNIST's own train or test split, or a folder cut
    80 / 10 / 10 per class with the run's seed. Folders (`all`, or another data set) are read
    file by file in chunks, so that a gallery of any size streams through memory.

    Raises:
        ValueError: an unknown split, or a part with no image.
    """
    dataset = dataset or config.data.dataset
    own = _same_dataset(config, dataset)
    split = split or ("train" if own else "all")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    if own and split != "all":
        data = run_data(config)
        chosen = {"train": data.train, "val": data.val, "test": data.test}[split]
        gallery = Gallery(chosen.labels, chosen.class_names, f"{split} part of the run's data",
                          memory=chosen)  # fmt: skip
    elif dataset in DATASETS:  # MNIST, Fashion-MNIST: their own train and test splits
        title = TITLES[dataset]
        if split == "val":
            raise ValueError(f"{title} has train and test splits (or all); val is a run's part")
        sources = load_sources(DataConfig(dataset=dataset))
        chosen = sources[split] if split != "all" else _concatenate(list(sources.values()))
        gallery = Gallery(chosen.labels, chosen.class_names, f"{title} {split}", memory=chosen)
    else:
        scan = scan_folder(Path(dataset).expanduser())
        positions = np.arange(len(scan.files))
        if split != "all":
            cut = stratified_split(scan.labels, (0.8, 0.1, 0.1), config.train.seed)
            positions = cut[["train", "val", "test"].index(split)]
        gallery = Gallery(scan.labels[positions], scan.class_names, f"{dataset} ({split})",
                          files=[scan.files[p] for p in positions])  # fmt: skip
    if gallery.count == 0:
        hint = ""
        if own and split == "val":  # data.val_fraction 0: every training image trained on
            hint = (": the run was trained without a validation part (data.val_fraction 0); "
                    "use another labelled part, e.g. --split test")  # fmt: skip
        raise ValueError(f"the {gallery.description} has no image{hint}")
    return gallery


def _concatenate(parts: list[ImageSet]) -> ImageSet:
    known = all(p.sources is not None for p in parts)
    return ImageSet(
        np.concatenate([p.images for p in parts]),
        np.concatenate([p.labels for p in parts]),
        parts[0].class_names,
        np.concatenate([p.sources for p in parts]) if known else None,
    )
