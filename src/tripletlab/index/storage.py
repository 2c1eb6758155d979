"""An index folder: the FAISS index, its items table and a manifest, written atomically.

    INDEX_DIR/
      faiss.index     faiss.write_index of the index
      items.npz       ids, labels, sources (plain arrays, read without pickle)
      manifest.json   kind and settings, dimension, distance, count, class names, FAISS and
                      tripletlab versions, the SHA-256 of the model's weights, calibration,
                      and the SHA-256 of the two files above

The files' checksums are verified before FAISS reads a byte: FAISS trusts the sizes inside an
index file, so a truncated or altered one could crash the interpreter instead of raising.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

from tripletlab import __version__
from tripletlab.index._faiss import faiss, faiss_version
from tripletlab.index.calibration import Calibration
from tripletlab.index.embedding_index import EmbeddingIndex
from tripletlab.index.items import Items
from tripletlab.index.kinds import IndexSettings
from tripletlab.runs import INDEX
from tripletlab.utils.io import (
    atomic_folder,
    atomic_write_json,
    restore_interrupted,
    sha256_file,
)

log = logging.getLogger(__name__)

FAISS_FILE = "faiss.index"
ITEMS_FILE = "items.npz"
MANIFEST = "manifest.json"
FORMAT = 1


def manifest_of(index: EmbeddingIndex) -> dict[str, Any]:
    """The manifest of an index, file checksums left out."""
    return {
        "format": FORMAT,
        "kind": index.settings.kind,
        "settings": dataclasses.asdict(index.settings),
        "dimension": index.dim,
        "distance": index.distance,
        "normalized": index.normalized,
        "count": len(index),
        "next_id": index.next_id,
        "class_names": index.class_names,
        "model_sha256": index.model_sha256,
        "built_from": index.built_from,
        "calibration": None if index.calibration is None else index.calibration.to_dict(),
        "faiss_version": faiss_version(),
        "tripletlab_version": __version__,
    }


def check_destination(directory: Path) -> None:
    """Refuse to write an index over anything but an index, a new or an empty folder (a
    mistyped --out must not replace a run or a photo folder).

    Raises:
        ValueError: naming the folder.
    """
    directory = Path(directory)
    restore_interrupted(directory)
    other = directory.exists() and not (directory / MANIFEST).is_file()
    if other and (not directory.is_dir() or any(directory.iterdir())):
        raise ValueError(
            f"{directory} exists and is not an index folder: an index is written only "
            "into a new or empty folder, or over an index"
        )


def save_index(index: EmbeddingIndex, directory: Path) -> Path:
    """Write `directory` as a whole (a temporary sibling renamed into place): a reader, or a
    kill halfway, leaves the previous folder as it was."""
    if index._index is None:
        raise ValueError("an IVF-PQ index with nothing trained or added cannot be saved")
    directory = Path(directory)
    check_destination(directory)
    with atomic_folder(directory) as temp:
        try:
            faiss().write_index(index._index, str(temp / FAISS_FILE))
        except RuntimeError as error:  # FAISS's own I/O errors, a full disk say
            raise OSError(f"cannot write {directory / FAISS_FILE}: {error}") from None
        index.items.save(temp / ITEMS_FILE)
        manifest = manifest_of(index)
        manifest["files"] = {name: sha256_file(temp / name) for name in (FAISS_FILE, ITEMS_FILE)}
        atomic_write_json(temp / MANIFEST, manifest)
    return directory


def read_manifest(directory: Path) -> dict[str, Any]:
    """The manifest of an index folder.

    Raises:
        FileNotFoundError: not an index folder.
        ValueError: a damaged manifest.
    """
    restore_interrupted(Path(directory))
    path = Path(directory) / MANIFEST
    if not path.is_file():
        inner = Path(directory) / INDEX / MANIFEST  # a run folder given for its index
        hint = (f"its index is {inner.parent}" if inner.is_file()
                else "build one with tripletlab index build")  # fmt: skip
        raise FileNotFoundError(f"no index in {directory} (no {MANIFEST}): {hint}")
    try:
        manifest = json.loads(path.read_text())
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise ValueError(f"not a format {FORMAT} manifest")
        keys = ("kind", "settings", "dimension", "distance", "normalized", "count", "files")
        missing = [key for key in keys if key not in manifest]
        if missing:
            raise ValueError(f"no {', '.join(missing)}")
        _check_types(manifest)
    except (ValueError, KeyError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is damaged ({error}); build the index again") from None
    return manifest


def _check_types(manifest: dict[str, Any]) -> None:
    """Refuse a manifest whose fields are not what `save_index` writes (checksums of both
    files as hex strings, whole numbers, ...), before anything trusts them.

    Raises:
        ValueError: naming the field.
    """
    files = manifest["files"]
    hexes = isinstance(files, dict) and set(files) == {FAISS_FILE, ITEMS_FILE} and all(
        isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v)
        for v in files.values()
    )  # fmt: skip
    if not hexes:
        raise ValueError(f"files must hold the SHA-256 of {FAISS_FILE} and {ITEMS_FILE}")
    for key in ("dimension", "count", "next_id"):
        value = manifest.get(key, 0)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{key} must be a whole number >= 0")
    if not isinstance(manifest["settings"], dict):
        raise ValueError("settings must be a mapping")
    for key in ("model_sha256", "built_from", "calibration", "class_names"):
        kinds = {"model_sha256": str, "built_from": dict, "calibration": dict,
                 "class_names": list}  # fmt: skip
        if manifest.get(key) is not None and not isinstance(manifest[key], kinds[key]):
            raise ValueError(f"{key} must be a {kinds[key].__name__}")


def check_files(directory: Path, manifest: dict[str, Any]) -> None:
    """Refuse index files that are missing or differ from the manifest's checksums (read in
    chunks, before FAISS reads anything).

    Raises:
        ValueError: naming the file.
    """
    for name, expected in manifest["files"].items():
        path = Path(directory) / name
        if not path.is_file():
            raise ValueError(f"{path} is missing; build the index again")
        if sha256_file(path) != expected:
            raise ValueError(
                f"{path} is damaged (its checksum differs from the manifest's: truncated or "
                "altered); build the index again"
            )


def check_fits(
    directory: Path, dimension: int, normalized: bool, model_dimension: int, model_normalizes: bool
) -> None:
    """Refuse an index (of `dimension`, unit vectors if `normalized`) whose vectors a model's
    (`model_dimension`, unit if `model_normalizes`) cannot be searched against: the case of
    another model's index taken with --force.

    Raises:
        ValueError: saying what differs.
    """
    hint = "build the index with this run: tripletlab index build RUN_DIR"
    if dimension != model_dimension:
        raise ValueError(f"the index in {directory} holds {dimension}-d vectors and the run's "
                         f"model makes {model_dimension}-d ones; {hint}")  # fmt: skip
    if normalized and not model_normalizes:
        raise ValueError(f"the index in {directory} holds unit vectors and the run's model "
                         f"does not normalize (model.normalize false); {hint}")  # fmt: skip


def write_calibration(directory: Path, calibration: Calibration) -> None:
    """Store a calibration in the manifest (atomically; the index files are not touched)."""
    manifest = read_manifest(directory)
    manifest["calibration"] = calibration.to_dict()
    atomic_write_json(Path(directory) / MANIFEST, manifest)


def check_model(
    directory: Path, manifest: dict[str, Any], model_sha256: str | None, force: bool
) -> None:
    """Refuse an index whose manifest names another model than `model_sha256` (the SHA-256
    of the weights that will embed the queries), unless `force` (then a warning).

    Raises:
        ValueError: saying how to go on.
    """
    made_by = manifest.get("model_sha256")
    if not (model_sha256 and made_by and made_by != model_sha256):
        return
    message = (
        f"the index in {directory} was built by another model (weights SHA-256 "
        f"{made_by[:12]}..., this one {model_sha256[:12]}...): its vectors do not compare "
        "with this model's. Build the index again, or pass --force to use it anyway"
    )
    if not force:
        raise ValueError(message)
    log.warning("%s (forced)", message.split(". Build")[0])


def load_index(
    directory: Path, model_sha256: str | None = None, force: bool = False
) -> EmbeddingIndex:
    """Read an index folder written by `save_index`.

    Args:
        model_sha256: the SHA-256 of the weights of the model that will embed the queries;
            an index made by another model is refused unless `force`.
    Raises:
        FileNotFoundError: not an index folder.
        ValueError: another model (unless forced), files that are missing, truncated or
            altered, or that disagree with the manifest.
    """
    manifest = read_manifest(directory)
    check_model(directory, manifest, model_sha256, force)
    made_by = manifest.get("model_sha256")
    check_files(directory, manifest)
    try:
        settings = IndexSettings(**manifest["settings"])
        index = EmbeddingIndex(
            int(manifest["dimension"]), manifest["distance"], bool(manifest["normalized"]),
            settings, list(manifest.get("class_names") or []), made_by,
        )  # fmt: skip
        index.built_from = dict(manifest.get("built_from") or {})
        if manifest.get("calibration"):
            index.calibration = Calibration.from_dict(manifest["calibration"])
    except (TypeError, ValueError) as error:
        raise ValueError(f"{directory / MANIFEST} is damaged ({error})") from None
    try:
        index._index = faiss().read_index(str(Path(directory) / FAISS_FILE))
    except RuntimeError as error:
        raise ValueError(f"FAISS cannot read {directory / FAISS_FILE}: {error}") from None
    index.items = Items.load(Path(directory) / ITEMS_FILE)
    index.next_id = int(manifest.get("next_id", 0))
    stored = index._index.ntotal
    if index._index.d != index.dim or stored != len(index.items) or stored != manifest["count"]:
        raise ValueError(
            f"{directory}: the FAISS index ({stored} x {index._index.d}), the items table "
            f"({len(index.items)}) and the manifest ({manifest['count']} x {index.dim}) disagree"
        )
    index.set_search()  # the settings' ef_search / nprobe
    return index
