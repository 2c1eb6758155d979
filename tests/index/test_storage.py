"""Saving and loading an index folder: round trips, the model check, damaged files."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tripletlab.index import (
    Calibration,
    EmbeddingIndex,
    IndexSettings,
    Threshold,
    read_manifest,
    storage,
    write_calibration,
)


def _index(kind: str = "exact", n: int = 3000) -> EmbeddingIndex:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    index = EmbeddingIndex(16, "angular", True, IndexSettings(kind, nlist=8, nbits=4),
                           ["a", "b", "c"], model_sha256="ab" * 32)  # fmt: skip
    index.add(x, np.arange(n) % 3, [f"mnist:train:{i}" for i in range(n)])
    index.built_from = {"run": "/somewhere", "gallery": "test"}
    return index


@pytest.mark.parametrize("kind", ["exact", "hnsw", "ivf-pq"])
def test_save_and_load_give_the_same_index(tmp_path, kind):
    index = _index(kind)
    index.calibration = Calibration((Threshold(0.9, 0.3, 0.91, 0.8, 0.7, 0.01),), 50, "val", True)
    index.save(tmp_path / "ix")
    loaded = EmbeddingIndex.load(tmp_path / "ix", model_sha256="ab" * 32)
    queries = np.random.default_rng(1).normal(size=(20, 16))
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    for got, want in zip(loaded.search(queries, 5), index.search(queries, 5), strict=True):
        np.testing.assert_array_equal(got, want)
    assert loaded.sources_of(np.array([7])) == ["mnist:train:7"]
    assert loaded.class_names == ["a", "b", "c"] and loaded.built_from["run"] == "/somewhere"
    assert loaded.calibration == index.calibration and loaded.settings == index.settings
    manifest = read_manifest(tmp_path / "ix")
    assert manifest["count"] == 3000 and manifest["dimension"] == 16
    assert manifest["distance"] == "angular" and manifest["faiss_version"]
    # Grows and is saved again over the old folder.
    loaded.add(queries[:2], np.array([0, 1]))
    loaded.save(tmp_path / "ix")
    assert len(EmbeddingIndex.load(tmp_path / "ix")) == 3002
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ix"]  # no temporary folder left


def test_another_model_is_refused_unless_forced(tmp_path):
    _index().save(tmp_path / "ix")
    with pytest.raises(ValueError, match=r"built by another model.*--force"):
        EmbeddingIndex.load(tmp_path / "ix", model_sha256="cd" * 32)
    assert len(EmbeddingIndex.load(tmp_path / "ix", model_sha256="cd" * 32, force=True)) == 3000


def test_sources_that_are_not_utf8_read_back_as_the_same_file_name(tmp_path):
    """A Latin-1 file name (bytes os.fsdecode turns into surrogates) failed the save."""
    name = os.fsdecode(str(tmp_path).encode() + b"/caf\xe9.png")
    index = EmbeddingIndex(2, "L2", normalized=False)
    index.add(np.ones((2, 2), np.float32), np.zeros(2, dtype=np.int64), [name, "ok é"])
    index.save(tmp_path / "ix")
    assert EmbeddingIndex.load(tmp_path / "ix").sources_of(np.array([0, 1])) == [name, "ok é"]


def test_a_failed_save_leaves_the_previous_index(tmp_path, monkeypatch):
    index = _index()
    index.save(tmp_path / "ix")
    index.add(np.eye(16, dtype=np.float32)[:1], np.array([0]))

    def broken(self, path):
        raise OSError("disk full")

    monkeypatch.setattr(storage.Items, "save", broken)
    with pytest.raises(OSError, match="disk full"):
        index.save(tmp_path / "ix")
    assert len(EmbeddingIndex.load(tmp_path / "ix")) == 3000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ix"]


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete", "manifest", "items"])
def test_damaged_files_give_a_clear_error(tmp_path, damage):
    _index().save(tmp_path / "ix")
    target = (
        tmp_path
        / "ix"
        / {"manifest": "manifest.json", "items": "items.npz"}.get(damage, "faiss.index")
    )
    data = bytearray(target.read_bytes())
    if damage == "truncate":
        target.write_bytes(data[: len(data) // 2])
    elif damage in ("flip", "items"):
        data[len(data) // 2] ^= 0xFF
        target.write_bytes(bytes(data))
    elif damage == "delete":
        target.unlink()
    else:
        target.write_text("{not json")
    with pytest.raises(ValueError, match=r"damaged|missing"):
        EmbeddingIndex.load(tmp_path / "ix")


def test_a_truncated_faiss_file_with_matching_checksums_is_an_error_not_a_crash(tmp_path):
    # Someone rewrote the manifest's checksums for a cut file: FAISS itself reads it; run in
    # a child process so that a crash of the interpreter would show as a signal.
    _index("hnsw").save(tmp_path / "ix")
    target = tmp_path / "ix" / "faiss.index"
    target.write_bytes(target.read_bytes()[:5000])
    manifest = json.loads((tmp_path / "ix" / "manifest.json").read_text())
    from tripletlab.utils.io import sha256_file

    manifest["files"]["faiss.index"] = sha256_file(target)
    (tmp_path / "ix" / "manifest.json").write_text(json.dumps(manifest))
    code = ("import sys; from tripletlab.index import EmbeddingIndex\n"
            "try:\n    EmbeddingIndex.load(sys.argv[1])\nexcept ValueError as e:\n"
            "    print(e); sys.exit(3)\n")  # fmt: skip
    child = subprocess.run([sys.executable, "-c", code, str(tmp_path / "ix")],
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert child.returncode == 3, child.stderr
    assert "FAISS cannot read" in child.stdout


def test_not_an_index_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="tripletlab index build"):
        EmbeddingIndex.load(tmp_path)
    _index(n=300).save(tmp_path / "index")  # a run folder, whose index is in index/
    with pytest.raises(FileNotFoundError, match=f"its index is {tmp_path / 'index'}$"):
        EmbeddingIndex.load(tmp_path)


def test_calibration_is_written_into_the_manifest_alone(tmp_path):
    _index().save(tmp_path / "ix")
    before = (tmp_path / "ix" / "faiss.index").read_bytes()
    calibration = Calibration((Threshold(0.99, None, 0.5, 0.0, 0.0),), 10, "val")
    write_calibration(tmp_path / "ix", calibration)
    assert EmbeddingIndex.load(tmp_path / "ix").calibration == calibration
    assert (tmp_path / "ix" / "faiss.index").read_bytes() == before


def test_an_index_is_never_written_over_another_folder(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "cat.jpg").write_bytes(b"precious")
    with pytest.raises(ValueError, match="not an index folder"):
        _index().save(photos)
    assert (photos / "cat.jpg").read_bytes() == b"precious"
    (tmp_path / "empty").mkdir()
    _index().save(tmp_path / "empty")  # a new or empty folder, or an index, is fine
    _index().save(tmp_path / "empty")


def test_a_swap_cut_between_its_renames_is_undone(tmp_path):
    _index().save(tmp_path / "ix")
    # What a kill between the two renames of atomic_folder leaves: the old folder aside.
    aside = tmp_path / ".ix.old.abc123"
    aside.mkdir()
    (tmp_path / "ix").rename(aside / "ix")
    assert len(EmbeddingIndex.load(tmp_path / "ix")) == 3000
    assert not aside.exists()


@pytest.mark.parametrize(
    "field", [{"files": []}, {"files": {}}, {"model_sha256": 5}, {"count": "many"}]
)
def test_a_manifest_with_wrong_fields_is_damaged(tmp_path, field):
    _index().save(tmp_path / "ix")
    manifest = json.loads((tmp_path / "ix" / "manifest.json").read_text())
    manifest.update(field)
    (tmp_path / "ix" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="damaged"):
        EmbeddingIndex.load(tmp_path / "ix")
