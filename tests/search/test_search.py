"""Galleries of a trained run on real MNIST: build, calibrate, match "unknown", folders
streamed in chunks, adding and removing images."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tripletlab.data import load_mnist, run_data
from tripletlab.data.fashion import DEBIAN_FOLDER, load_fashion_mnist
from tripletlab.index import EmbeddingIndex, IndexSettings
from tripletlab.search import (
    Searcher,
    add_images,
    build_index,
    calibrate_index,
    open_gallery,
    read_image,
    remove_items,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def calibrated(run_04, tmp_path_factory):
    """The run's training part indexed and calibrated on its validation part."""
    out = tmp_path_factory.mktemp("index") / "ix"
    build_index(run_04, out=out)
    calibration = calibrate_index(out)
    return out, calibration


def test_the_index_holds_the_training_part_with_its_sources(run_04, calibrated):
    out, _ = calibrated
    train = run_data(run_04.config).train
    index = EmbeddingIndex.load(out)
    assert len(index) == len(train) and set(np.unique(index.items.labels)) == {0, 1, 2, 3, 4}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["built_from"]["run"] == str(run_04.path.resolve())
    for item in (0, 17, len(train) - 1):
        source = index.sources_of(np.array([item]))[0]
        assert source.startswith("mnist:train:")
        np.testing.assert_array_equal(read_image(source, (28, 28), 1), train.images[item])
        assert index.labels_of(np.array([item]))[0] == train.labels[item]
    for bad in ("mnist:foo:1", "mnist:test:-1", "fashion-mnist:test"):
        with pytest.raises(ValueError, match=f"{bad}: a data set's image is named like"):
            read_image(bad, (28, 28), 1)


def test_calibrated_thresholds_tighten_with_the_precision(calibrated):
    _, calibration = calibrated
    t90, t95, t99 = calibration.thresholds
    assert calibration.open_set and calibration.queries == 400
    assert t90.distance >= t95.distance >= t99.distance > 0
    assert t99.precision >= 0.99 and 0 < t99.recall <= t90.recall <= 1
    assert t99.impostors_accepted <= t90.impostors_accepted


def test_digits_never_seen_mostly_come_back_unknown(run_04, calibrated):
    out, _ = calibrated
    searcher = Searcher(run_04, out)
    test = load_mnist("test")
    for digits, most_unknown in (((5, 6, 7, 8, 9), True), ((0, 1, 2, 3, 4), False)):
        chosen = np.flatnonzero(np.isin(test.labels, digits))[:500]
        vectors = searcher.embedder.embed(test.images[chosen])
        matches = searcher.index.match(vectors, precision=0.99)
        unknown = float((matches.labels < 0).mean())
        assert (unknown > 0.6) if most_unknown else (unknown < 0.4), (digits, unknown)
        if not most_unknown:  # what is answered is mostly right
            answered = matches.labels >= 0
            assert (matches.labels[answered] == test.labels[chosen][answered]).mean() > 0.95
    verdict = searcher.match(["mnist:test:3"])[0]  # a 0
    assert verdict.label == "0" and verdict.nearest.source.startswith("mnist:train:")


def _write_digits(folder, images, labels, names):
    paths = []
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        path = folder / names[label] / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path)
        paths.append(path)
    return paths


def test_a_folder_gallery_streams_in_chunks_and_skips_bad_files(run_04, tmp_path, caplog):
    test = load_mnist("test")
    chosen = np.flatnonzero(test.labels < 3)[:70]
    paths = _write_digits(tmp_path / "gallery", test.images[chosen], test.labels[chosen],
                          ["zero", "one", "two"])  # fmt: skip
    (tmp_path / "gallery" / "one" / "broken.png").write_bytes(b"\x89PNG\r\n not really")
    gallery = open_gallery(run_04.config, str(tmp_path / "gallery"))
    assert gallery.memory is None and gallery.count == 71  # read from disk as it goes
    chunks = list(gallery.chunks((28, 28), 1, chunk=16))
    assert len(chunks) == 5 and max(len(c[0]) for c in chunks) == 16
    assert sum(c[3] for c in chunks) == 1  # the broken file, counted
    index = build_index(run_04, dataset=str(tmp_path / "gallery"), out=tmp_path / "ix", chunk=16)
    assert len(index) == 70 and index.class_names == ["one", "two", "zero"]
    assert "broken.png" in caplog.text
    searcher = Searcher(run_04, tmp_path / "ix")
    hits = searcher.search([str(paths[5])], k=3)[0]
    assert hits[0].source == str(paths[5].resolve()) and hits[0].distance < 1e-2


def test_adding_and_removing_images(run_04, calibrated, tmp_path):
    out, _ = calibrated
    copy = tmp_path / "ix"
    EmbeddingIndex.load(out).save(copy)
    test = load_mnist("test")
    sevens = np.flatnonzero(test.labels == 7)[:6]
    files = _write_digits(tmp_path / "new", test.images[sevens], np.zeros(6, dtype=int), ["7"])
    with pytest.raises(ValueError, match="need a label"):
        add_images(copy, [files[0]])
    ids, skipped = add_images(copy, [tmp_path / "new"])  # the class sub-folder names them
    index = EmbeddingIndex.load(copy)
    assert skipped == 0 and len(ids) == 6 and "seven" not in index.class_names
    assert set(index.labels_of(ids)) == {index.class_names.index("7")}
    more, _ = add_images(copy, files[:2], label="seven")
    grown = EmbeddingIndex.load(copy)
    assert [grown.label_name(int(y)) for y in grown.labels_of(more)] == ["seven", "seven"]
    assert grown.class_names[-1] == "seven"  # a new class
    assert remove_items(copy, list(ids)) == 6
    assert len(EmbeddingIndex.load(copy)) == len(EmbeddingIndex.load(out)) + 2


def test_an_ivf_pq_gallery_of_a_run(run_04, tmp_path):
    settings = IndexSettings("ivf-pq", nlist=8, nbits=4, nprobe=8)
    index = build_index(run_04, settings=settings, out=tmp_path / "ix")
    assert index.settings.pq_m == 64 and index.is_trained  # 256-d: 4 dimensions a byte
    hits = Searcher(run_04, tmp_path / "ix").search(["mnist:test:3"], k=5)[0]  # a 0
    assert len(hits) == 5 and [h.label for h in hits].count("0") >= 4


def test_a_query_is_its_own_gallery_item_by_resolved_path(tmp_path, monkeypatch):
    from tripletlab.search.build import _same_source

    (tmp_path / "a.png").write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    assert _same_source("a.png", str(tmp_path / "a.png"))
    assert _same_source("mnist:train:3", "mnist:train:3")
    assert not _same_source("mnist:train:3", "mnist:train:30")
    assert not _same_source("", "") and not _same_source("a.png", "b.png")


def test_a_run_without_validation_part_says_which_part_to_calibrate_on():
    # data.val_fraction 0: every training image trained on, no val part.
    from tripletlab.config import RunConfig, merge

    config = merge(RunConfig(), {"data": {"val_fraction": 0.0, "limit": 400}})
    with pytest.raises(ValueError, match=r"without a validation part .* --split test"):
        open_gallery(config, None, "val")
    assert open_gallery(config, None, "test").count == 10000


@pytest.mark.skipif(
    not DEBIAN_FOLDER.is_dir(), reason="apt-get install dataset-fashion-mnist (.ci/run does)"
)
def test_fashion_mnist_is_a_gallery_like_mnist():
    """Its own run's `all`, and another run's `--dataset fashion-mnist`: its two splits, not a
    folder named fashion-mnist."""
    from tripletlab.config import RunConfig, merge

    fashion = merge(RunConfig(), {"data": {"dataset": "fashion-mnist"}})
    everything = open_gallery(fashion, None, "all")
    assert everything.count == 70000 and everything.class_names[0] == "T-shirt/top"
    other = open_gallery(RunConfig(), "fashion-mnist", None)
    assert other.count == 70000 and other.description == "Fashion-MNIST all"
    test = open_gallery(RunConfig(), "fashion-mnist", "test")
    assert test.count == 10000
    images, labels, sources, skipped = next(test.chunks((28, 28), 1, 5))
    assert sources[0] == "fashion-mnist:test:0" and skipped == 0 and images.shape == (5, 28, 28)
    assert labels.tolist() == load_fashion_mnist("test").labels[:5].tolist()
    with pytest.raises(ValueError, match="Fashion-MNIST has train and test splits"):
        open_gallery(RunConfig(), "fashion-mnist", "val")


def test_adding_a_new_class_to_an_index_without_class_names(run_04, tmp_path):
    """`index add --label cat` on an index built in Python (no class names) merged the cats
    into class 0."""
    from tripletlab.models import Embedder

    vectors = Embedder.from_pretrained(run_04.path).embed(load_mnist("test").images[:2])
    bare = EmbeddingIndex(vectors.shape[1], "L2")
    bare.add(vectors, np.array([0, 1]))
    bare.save(tmp_path / "ix")
    Image.fromarray(load_mnist("test").images[5]).save(tmp_path / "cat.png")
    ids, skipped = add_images(tmp_path / "ix", [tmp_path / "cat.png"], "cat", run_04.path)
    index = EmbeddingIndex.load(tmp_path / "ix")
    assert skipped == 0 and index.class_names == ["0", "1", "cat"]
    assert [index.label_name(int(y)) for y in index.labels_of(np.array([0, 1, *ids]))] == [
        "0", "1", "cat"]  # fmt: skip
