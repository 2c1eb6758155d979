"""Build an index from a run, add images to it, remove items, calibrate it."""

from __future__ import annotations

import logging
import shlex
from pathlib import Path

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from tripletlab.index import (
    DEFAULT_PRECISIONS,
    Calibration,
    EmbeddingIndex,
    IndexSettings,
    calibrate,
    check_destination,
    check_fits,
    check_targets,
    default_nlist,
    read_manifest,
    search_other_classes,
    write_calibration,
)
from tripletlab.models import Embedder
from tripletlab.runs import RunDir, checkpoint_sha256
from tripletlab.search.gallery import open_gallery
from tripletlab.search.sources import decoded_chunks, image_files
from tripletlab.utils.progress import progress_bar

log = logging.getLogger(__name__)

# Images decoded and embedded per step of a build: bounds memory whatever the gallery's size.
CHUNK = 4096
# IVF-PQ trains on a sample of this many vectors, or 39 per list and per PQ centroid where
# that is more (FAISS's minimum: 639,000 for the 16,384 lists of a 10,000,000 gallery).
_TRAIN_SAMPLE = 100_000


def _progress() -> Progress:
    return progress_bar(BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())


def build_index(
    run_dir: str | Path,
    dataset: str | None = None,
    split: str | None = None,
    settings: IndexSettings | None = None,
    out: str | Path | None = None,
    chunk: int = CHUNK,
) -> EmbeddingIndex:
    """Embed a gallery with the run's best checkpoint and save its index (default
    `RUN_DIR/index/`), chunk by chunk; see `open_gallery` for `dataset` and `split`.

    Returns:
        The index, saved.
    Raises:
        FileNotFoundError: no run or checkpoint there.
        ValueError: bad settings, or a gallery without usable images.
    """
    run = RunDir.open(run_dir)
    destination = Path(out) if out else run.index
    check_destination(destination)  # before any image is embedded
    embedder = Embedder.from_pretrained(run.path)
    config = run.config
    settings = settings or IndexSettings()
    gallery = open_gallery(config, dataset, split)
    index = EmbeddingIndex(embedder.embedding_dim, config.loss.distance, config.model.normalize,
                           settings, gallery.class_names, checkpoint_sha256(run.path))  # fmt: skip
    index.built_from = {"run": str(run.path.resolve()), "gallery": gallery.description}
    size, channels = config.model.image_size, config.model.channels
    with _progress() as progress:
        if settings.kind == "ivf-pq":
            nlist = settings.nlist or default_nlist(gallery.count)
            want = min(gallery.count, max(39 * max(nlist, 2**settings.nbits), _TRAIN_SAMPLE))
            rng = np.random.default_rng(config.train.seed)
            sample = np.sort(rng.choice(gallery.count, size=want, replace=False))
            task = progress.add_task("embedding a training sample", total=len(sample))
            vectors = []
            for images, _, _, _ in gallery.chunks(size, channels, chunk, sample):
                vectors.append(embedder.embed(images))
                progress.advance(task, len(images))
            index.train(np.concatenate(vectors), gallery_size=gallery.count)
        task = progress.add_task(f"indexing the {gallery.description}", total=gallery.count)
        skipped = 0
        for images, labels, sources, bad in gallery.chunks(size, channels, chunk):
            if len(images):
                index.add(embedder.embed(images), labels, sources)
            skipped += bad
            progress.advance(task, len(images) + bad)
    if skipped:
        log.warning("%d of %d images could not be read and were left out", skipped, gallery.count)
    if len(index) == 0:
        raise ValueError(f"no image of the {gallery.description} could be read")
    index.save(destination)
    return index


def index_run(index_dir: str | Path, run_dir: str | Path | None = None) -> RunDir:
    """The run whose model made an index: `run_dir`, else the one its manifest names.

    Raises:
        ValueError: the manifest names none and none is given.
    """
    if run_dir is not None:
        return RunDir.open(run_dir)
    named = (read_manifest(Path(index_dir)).get("built_from") or {}).get("run")
    if not named:
        raise ValueError(f"the index in {index_dir} does not name its run: give --run RUN_DIR")
    return RunDir.open(named)


def open_index(
    index_dir: str | Path, run: RunDir, force: bool = False
) -> tuple[EmbeddingIndex, Embedder]:
    """The index and the run's model, refusing an index made by another model unless `force`."""
    embedder = Embedder.from_pretrained(run.path)
    index = EmbeddingIndex.load(index_dir, checkpoint_sha256(run.path), force)
    check_fits(Path(index_dir), index.dim, index.normalized, embedder.embedding_dim,
               embedder.config.normalize)  # fmt: skip
    return index, embedder


def add_images(
    index_dir: str | Path,
    paths: list[Path],
    label: str | None = None,
    run_dir: str | Path | None = None,
    force: bool = False,
) -> tuple[np.ndarray, int]:
    """Embed image files (and the files of folders) and add them to a saved index.

    Files in class sub-folders take the sub-folder's name as label unless `label` is given;
    other files need `label`. A new label name becomes a new class of the index.
    Returns:
        The new ids (n,), and the number of unreadable files skipped.
    Raises:
        ValueError: files without a label, no readable image, another model (unless forced).
    """
    run = index_run(index_dir, run_dir)
    index, embedder = open_index(index_dir, run, force)
    files, classes = image_files(paths)
    if label is not None:
        classes = [label] * len(files)
    if any(name is None for name in classes):
        raise ValueError("images outside class sub-folders need a label: give --label NAME")
    index.class_names = index.names_with(classes)
    labels = np.array([index.class_names.index(name) for name in classes], dtype=np.int64)
    config = embedder.config
    ids, skipped = [], 0
    for images, kept, bad in decoded_chunks(files, config.image_size, config.channels, CHUNK):
        skipped += bad
        if len(images):
            sources = [str(files[p].resolve()) for p in kept]
            ids.append(index.add(embedder.embed(images), labels[kept], sources))
    if not ids:
        raise ValueError("none of the given files is a readable image; nothing was added")
    _calibration_is_stale(index, index_dir)
    index.save(index_dir)
    return np.concatenate(ids), skipped


def remove_items(index_dir: str | Path, ids: list[int]) -> int:
    """Remove items by id from a saved index; returns how many were removed.

    Raises:
        ValueError: an id that is not stored (nothing is removed then), or an HNSW index.
    """
    too_large = [i for i in ids if not 0 <= i < 2**63]
    if too_large:
        raise ValueError(f"no item with id {too_large[0]}")
    index = EmbeddingIndex.load(index_dir)
    removed = index.remove(np.array(ids, dtype=np.int64))
    _calibration_is_stale(index, index_dir)
    index.save(index_dir)
    return removed


def _calibration_is_stale(index: EmbeddingIndex, index_dir: str | Path) -> None:
    if index.calibration is not None:
        command = f"tripletlab index calibrate {shlex.quote(str(index_dir))}"
        log.warning("the index's thresholds were calibrated before this change; calibrate it "
                    "again: %s", command)  # fmt: skip


def _same_source(query: str, item: str) -> bool:
    """Whether a query and a gallery item are one image (file paths compared resolved)."""
    if not query or not item:
        return False
    if query == item:
        return True
    return not query.startswith("mnist:") and Path(query).resolve() == Path(item).resolve()


def calibrate_index(
    index_dir: str | Path,
    split: str = "val",
    precisions: tuple[float, ...] = DEFAULT_PRECISIONS,
    run_dir: str | Path | None = None,
    force: bool = False,
    open_set: bool = True,
) -> Calibration:
    """Search a held-out labelled part of the run's data against the index and store the
    distance thresholds reaching `precisions` in its manifest.

    With `open_set` (the default) each query also stands for a query of a class the gallery
    lacks: its nearest item of another class counts as a wrong match. A query's own image, if
    the index holds it (same source), is passed over.
    Raises:
        ValueError: an empty part (a run trained without validation: use split "test").
    """
    check_targets(precisions)  # before any image is embedded
    run = index_run(index_dir, run_dir)
    index, embedder = open_index(index_dir, run, force)
    gallery = open_gallery(run.config, None, split)
    # Query label -> index label (by class name), -1 for a class the index lacks.
    to_index = np.array([index.class_names.index(n) if n in index.class_names else -1
                         for n in gallery.class_names])  # fmt: skip
    if len(to_index) and (to_index < 0).all():  # every match would be wrong: say why
        queried, held = (", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
                         for names in (gallery.class_names, index.class_names))  # fmt: skip
        raise ValueError(
            f"none of the classes of the {gallery.description} ({queried}) is in the index "
            f"({held}): calibration needs queries of the classes the index holds; calibrate "
            "an index built from the run's own data set"
        )
    known, correct, impostors = [], [], []
    size, channels = embedder.config.image_size, embedder.config.channels
    with _progress() as progress:
        task = progress.add_task(f"calibrating on the {gallery.description}", total=gallery.count)
        for images, labels, sources, _ in gallery.chunks(size, channels, CHUNK):
            vectors, own = embedder.embed(images), to_index[labels]
            distances, ids = index.search(vectors, k=2)
            # The second result where the first is the query's own image.
            nearest = index.sources_of(ids[:, 0])
            itself = np.array([_same_source(s, t) for s, t in zip(sources, nearest, strict=True)])
            rows, column = np.arange(len(images)), itself.astype(np.int64)
            known.append(distances[rows, column])
            correct.append((index.labels_of(ids[rows, column]) == own) & (own >= 0))
            if open_set:  # queries of a class the index lacks are wrong matches already
                found = search_other_classes(index, vectors[own >= 0], own[own >= 0], k=1)[0]
                impostors.append(found[np.isfinite(found[:, 0]), 0])  # none: one class only
            progress.advance(task, len(images))
    thresholds = calibrate(np.concatenate(known), np.concatenate(correct), precisions,
                           np.concatenate(impostors) if open_set else None)  # fmt: skip
    calibration = Calibration(tuple(thresholds), gallery.count, gallery.description, open_set)
    write_calibration(Path(index_dir), calibration)
    return calibration
