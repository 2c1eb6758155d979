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
import logging
from pathlib import Path
from typing import Any

from tripletlab import __version__
from tripletlab.index._faiss import faiss, faiss_version
from tripletlab.index.calibration import Calibration
from tripletlab.index.embedding_index import EmbeddingIndex
from tripletlab.index.items import Items
from tripletlab.index.kinds import IndexSettings
from tripletlab.utils.io import atomic_folder, atomic_write_json, sha256_file

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


def save_index(index: EmbeddingIndex, directory: Path) -> Path:
    """Write `directory` as a whole (a temporary sibling renamed into place): a reader, or a
    kill halfway, leaves the previous folder as it was."""
    if index._index is None:
        raise ValueError("an IVF-PQ index with nothing trained or added cannot be saved")
    with atomic_folder(directory) as temp:
        faiss().write_index(index._index, str(temp / FAISS_FILE))
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
    import json

    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(
            f"no index in {directory} (no {MANIFEST}): build one with tripletlab index build"
        )
    try:
        manifest = json.loads(path.read_text())
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise ValueError(f"not a format {FORMAT} manifest")
        keys = ("kind", "settings", "dimension", "distance", "normalized", "count", "files")
        missing = [key for key in keys if key not in manifest]
        if missing:
            raise ValueError(f"no {', '.join(missing)}")
    except (ValueError, KeyError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is damaged ({error}); build the index again") from None
    return manifest


def write_calibration(directory: Path, calibration: Calibration) -> None:
    """Store a calibration in the manifest (atomically; the index files are not touched)."""
    manifest = read_manifest(directory)
    manifest["calibration"] = calibration.to_dict()
    atomic_write_json(Path(directory) / MANIFEST, manifest)


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
    made_by = manifest.get("model_sha256")
    if model_sha256 and made_by and made_by != model_sha256:
        message = (
            f"the index in {directory} was built by another model (weights SHA-256 "
            f"{made_by[:12]}..., this one {model_sha256[:12]}...): its vectors do not compare "
            "with this model's. Build the index again, or pass --force to use it anyway"
        )
        if not force:
            raise ValueError(message)
        log.warning("%s (forced)", message.split(". Build")[0])
    for name, expected in manifest["files"].items():
        path = Path(directory) / name
        if not path.is_file():
            raise ValueError(f"{path} is missing; build the index again")
        if sha256_file(path) != expected:
            raise ValueError(
                f"{path} is damaged (its checksum differs from the manifest's: truncated or "
                "altered); build the index again"
            )
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
