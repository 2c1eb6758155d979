"""Named data sets and image folders, and the train / validation / test parts of a run."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tripletlab.config import DataConfig, RunConfig
from tripletlab.data.fashion import (
    DEBIAN_FOLDER,
    DEBIAN_PACKAGE,
    fashion_cache_path,
    load_fashion_mnist_splits,
)
from tripletlab.data.folder import check_channels, load_folder
from tripletlab.data.images import ImageSet
from tripletlab.data.mnist import load_mnist_splits
from tripletlab.data.splits import parse_split, stratified_split
from tripletlab.utils.io import verified_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunData:
    """The images of a run: training, held-out validation (part of training data), and test."""

    train: ImageSet
    val: ImageSet
    test: ImageSet


# Known by name (28 x 28 grey, from the cache); any other dataset is a folder of class folders.
DATASETS = ("mnist", "fashion-mnist")
TITLES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}
FOLDER_TEST_SHARE = 0.1  # of each class of a folder without split specs


def check_dataset(config: DataConfig, size: tuple[int, int], channels: int) -> None:
    """Refuse a data set that does not exist or cannot give images of `size` and `channels`,
    without reading any image.

    Raises:
        ValueError: naming the settings and what is accepted.
    """
    if config.dataset in DATASETS:
        if tuple(size) != (28, 28) or channels != 1:
            raise ValueError(
                f"{TITLES[config.dataset]} images are 28 x 28 grey; got model.image_size "
                f"{list(size)}, model.channels {channels}"
            )
        fashion = config.dataset == "fashion-mnist"
        if fashion and not (verified_file(fashion_cache_path()) or DEBIAN_FOLDER.is_dir()):
            raise ValueError(
                f"Fashion-MNIST is not installed: `apt-get install {DEBIAN_PACKAGE}` (Debian), "
                "or `tripletlab data prepare fashion-mnist --source DIR` with its IDX files"
            )
        return
    if not Path(config.dataset).expanduser().is_dir():
        raise ValueError(
            f"unknown dataset {config.dataset!r}; expected {', '.join(DATASETS)} or a folder "
            "with one sub-folder per class"
        )
    check_channels(channels)
    specs = (config.train_split, config.val_split, config.test_split)
    if not any(specs) and config.val_fraction >= 1 - FOLDER_TEST_SHARE:
        raise ValueError(
            f"data.val_fraction {config.val_fraction} leaves a folder no training images: "
            f"its test part is {FOLDER_TEST_SHARE:.0%} and the validation part val_fraction "
            "of the images; choose less, or split specs (data.train_split, ...)"
        )


def load_sources(
    config: DataConfig, size: tuple[int, int] = (28, 28), channels: int = 1
) -> dict[str, ImageSet]:
    """The source splits of the data set: MNIST's "train" and "test", a folder's "train".

    Raises:
        ValueError: see `check_dataset`.
    """
    check_dataset(config, size, channels)
    if config.dataset == "mnist":
        return load_mnist_splits()
    if config.dataset == "fashion-mnist":
        return load_fashion_mnist_splits()
    images, _ = load_folder(Path(config.dataset).expanduser(), tuple(size), channels)
    return {"train": images}


def _keep_classes(images: ImageSet, classes: tuple[int, ...] | None) -> ImageSet:
    if not classes:
        return images
    return images.subset(np.flatnonzero(np.isin(images.labels, classes)))


def _unseen_classes(
    config: DataConfig, train: ImageSet, val: ImageSet, test: ImageSet
) -> tuple[ImageSet, ImageSet, ImageSet]:
    """Training and validation images of `train_classes`, test images of `test_classes` (each
    by default every class the other does not name); unchanged when neither is set."""
    if config.train_classes is None and config.test_classes is None:
        return train, val, test
    every = set(np.unique(np.concatenate([train.labels, val.labels, test.labels])).tolist())
    seen = set(config.train_classes or every - set(config.test_classes or ()))
    unseen = set(config.test_classes or every - seen)
    if not seen or not unseen:
        raise ValueError(
            f"data.train_classes {sorted(seen)} and data.test_classes {sorted(unseen)}: "
            f"both need classes (of the data set's {sorted(every)})"
        )
    keep = [_keep_classes(part, tuple(sorted(classes)))
            for part, classes in ((train, seen), (val, seen), (test, unseen))]  # fmt: skip
    return keep[0], keep[1], keep[2]


def _cap_per_class(images: ImageSet, per_class: int | None) -> ImageSet:
    if per_class is None:
        return images
    keep = [np.flatnonzero(images.labels == c)[:per_class] for c in np.unique(images.labels)]
    return images.subset(np.sort(np.concatenate(keep)))


def _from_specs(config: DataConfig, sources: dict[str, ImageSet], seed: int) -> list[ImageSet]:
    specs = [config.train_split, config.val_split, config.test_split]
    if "test" in sources and specs[2] is None:
        specs[2] = "test"
    if any(spec is None for spec in specs):
        raise ValueError(
            "give data.train_split, data.val_split and data.test_split together (alone, "
            "data.test_split may only cut a data set's own test split, e.g. 'test[:20%]')"
        )
    return _cut(config, sources, specs, seed)


def _cut(
    config: DataConfig, sources: dict[str, ImageSet], specs: list[str], seed: int
) -> list[ImageSet]:
    """The parts the split specs choose, in their order."""
    parsed = [parse_split(text) for text in specs]
    for text, spec in zip(specs, parsed, strict=True):
        if spec.source not in sources:
            raise ValueError(
                f"split {text!r}: no source split {spec.source!r}; have {', '.join(sources)}"
            )
    parts = []
    for spec in parsed:
        source = sources[spec.source]
        # Per class only if every spec cutting this source is in percent: specs of one source
        # must share one order to stay disjoint.
        same_source = [other for other in parsed if other.source == spec.source]
        per_class = config.split_order == "per-class" and all(s.in_percent for s in same_source)
        labels = source.labels if per_class else None
        parts.append(source.subset(spec.indices(len(source), seed, labels)))
    return parts


def load_run_data(
    config: DataConfig, seed: int = 0, size: tuple[int, int] = (28, 28), channels: int = 1
) -> RunData:
    """Load the data set and cut it into the run's train, validation and test parts.

    MNIST without split specs: `limit` training images (a seeded random choice), of which
    `val_fraction` are held out; test is the 10,000 test images, or the part `test_split` alone
    cuts from them (e.g. "test[:20%]", stratified). A folder without split specs: a
    stratified split, `val_fraction` of each class for validation, 10% for testing, the rest
    (80% by default) for training. Split specs choose the parts instead. `classes` and
    `per_class` then filter them (`per_class` only the training part). All choices are fixed
    by `seed`, so `evaluate` sees the same parts as `train`.

    Raises:
        ValueError: unknown data set, bad specs, or settings that leave no training images.
    """
    sources = load_sources(config, size, channels)
    _check_named_classes(config, sources)
    sources = {k: _keep_classes(v, config.classes) for k, v in sources.items()}
    # MNIST's parts; data.test_split alone may cut its test split (e.g. "test[:20%]", quicker
    # evaluations), never the training split the other parts come from.
    test_spec = parse_split(config.test_split) if config.test_split else None
    alone = not (config.train_split or config.val_split)
    if "test" in sources and alone and (test_spec is None or test_spec.source == "test"):
        full = sources["train"]
        order = np.random.default_rng(seed).permutation(len(full))
        if config.limit is not None:
            order = order[: config.limit]
        num_val = round(len(order) * config.val_fraction)
        train, val = full.subset(np.sort(order[num_val:])), full.subset(np.sort(order[:num_val]))
        test = sources["test"]
        if config.test_split:
            test = _cut(config, sources, [config.test_split], seed)[0]
    elif any((config.train_split, config.val_split, config.test_split)):
        train, val, test = _from_specs(config, sources, seed)
    else:  # a folder: val_fraction of each class for validation, a tenth for testing
        shares = (1 - FOLDER_TEST_SHARE - config.val_fraction, config.val_fraction,
                  FOLDER_TEST_SHARE)  # fmt: skip
        parts = stratified_split(sources["train"].labels, shares, seed)
        train, val, test = (sources["train"].subset(part) for part in parts)
    if config.limit is not None and len(train) > config.limit:
        train = train.subset(
            np.sort(np.random.default_rng(seed).permutation(len(train))[: config.limit])
        )
    train, val, test = _unseen_classes(config, train, val, test)
    train = _cap_per_class(train, config.per_class)
    _check_parts(train, val, test)
    return RunData(train, val, test)


def _check_named_classes(config: DataConfig, sources: dict[str, ImageSet]) -> None:
    """Refuse class ids in data.classes, .train_classes or .test_classes that the data set
    does not have (they would select nothing, and a later error would blame the sizes)."""
    labels = [part.labels for part in sources.values()]
    have = sorted(set(np.concatenate(labels).tolist())) if labels else []
    if not have:
        return
    for key, named in (("data.classes", config.classes),
                       ("data.train_classes", config.train_classes),
                       ("data.test_classes", config.test_classes)):  # fmt: skip
        missing = sorted(set(named or ()) - set(have))
        if missing:
            contiguous = have == list(range(have[0], have[-1] + 1))
            ids = f"{have[0]}-{have[-1]}" if contiguous else ", ".join(map(str, have[:20]))
            raise ValueError(
                f"{key} names classes the data set does not have: "
                f"{', '.join(map(str, missing))} (its classes: {ids})"
            )


def _check_parts(train: ImageSet, val: ImageSet, test: ImageSet) -> None:
    """Refuse parts too small to train or measure on, before any training: retrieval metrics
    need a class with two images in the test part, and in the validation part if there is one.

    Raises:
        ValueError: naming the part, its size and the settings that change it.
    """
    if len(train) < 2 or len(np.unique(train.labels)) < 2:
        raise ValueError(
            f"the training part ({len(train)} images) needs at least two images of two classes"
        )
    for name, part, settings in (
        ("validation", val, "raise data.val_fraction (--val-fraction), set it to 0 for no "
                            "validation, or add images"),
        ("test", test, "add images, or choose a larger data.test_split"),
    ):  # fmt: skip
        if name == "validation" and len(part) <= 1:
            continue  # no validation: the best epoch is the one with the lowest loss
        counts = np.bincount(part.labels) if len(part) else np.zeros(1, dtype=np.int64)
        if counts.max() < 2:
            raise ValueError(
                f"the {name} part ({len(part)} images) has no class with two images, which "
                f"its retrieval metrics need: {settings}"
            )


def check_run_data(config: RunConfig) -> None:
    """`check_dataset` for a run config's data, image size and channels (reads no image)."""
    check_dataset(config.data, config.model.image_size, config.model.channels)


def run_data(config: RunConfig) -> RunData:
    """The train, validation and test parts of a run: `load_run_data` with the run's seed and
    its model's image size and channels (what `evaluate` and `export` use to see the same parts
    as `train`)."""
    model = config.model
    return load_run_data(config.data, config.train.seed, model.image_size, model.channels)
