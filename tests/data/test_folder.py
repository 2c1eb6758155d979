"""Image folders built in the test: PNG and JPEG files, plus corrupt, empty and non-image ones."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

from tripletlab.config import DataConfig
from tripletlab.data.datasets import load_run_data
from tripletlab.data.folder import decode_image, load_folder, scan_folder


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TRIPLETLAB_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "pets"
    rng = np.random.default_rng(0)
    for name, colour in (("cats", (200, 50, 50)), ("dogs", (50, 50, 200))):
        (root / name).mkdir(parents=True)
        for i in range(10):
            pixels = np.clip(rng.normal(colour, 20, size=(40 + i, 50, 3)), 0, 255).astype(np.uint8)
            suffix = "png" if i % 2 else "jpg"
            Image.fromarray(pixels).save(root / name / f"{i}.{suffix}")
    (root / "cats" / "empty.png").write_bytes(b"")
    (root / "cats" / "notes.txt").write_text("not an image")
    good = (root / "dogs" / "1.png").read_bytes()
    (root / "dogs" / "truncated.png").write_bytes(good[: len(good) // 2])
    (root / "birds").mkdir()  # a class with no image at all
    (root / "birds" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    return root


def test_folder_loads_good_files_and_skips_bad_ones_with_a_count(folder, caplog):
    with caplog.at_level(logging.WARNING):
        images, skipped = load_folder(folder, size=(32, 32), channels=3)
    assert skipped == 4
    assert images.images.shape == (20, 32, 32, 3) and images.images.dtype == np.uint8
    assert images.class_names == ["cats", "dogs"]
    assert np.bincount(images.labels).tolist() == [10, 10]
    assert caplog.text.count("skipping") == 4 and "skipped 4 of 24 files" in caplog.text
    assert "'birds' has no usable image" in caplog.text
    # Colour survives: cats are red, dogs blue.
    assert (
        images.images[images.labels == 0][..., 0].mean()
        > images.images[images.labels == 0][..., 2].mean()
    )


def test_decoded_images_are_cached(folder, tmp_path):
    first, _ = load_folder(folder, size=(16, 16), channels=1)
    cached = list((tmp_path / "cache" / "folders").glob("*.npz"))
    assert len(cached) == 1
    again, skipped = load_folder(folder, size=(16, 16), channels=1)
    np.testing.assert_array_equal(again.images, first.images)
    assert skipped == 4 and again.images.shape == (20, 16, 16)
    # Touching a file changes the key: the folder is decoded again.
    (folder / "cats" / "0.jpg").write_bytes((folder / "cats" / "2.jpg").read_bytes())
    load_folder(folder, size=(16, 16), channels=1)
    assert len(list((tmp_path / "cache" / "folders").glob("*.npz"))) == 2


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    import tripletlab.data.folder as folder_module

    Image.new("L", (300, 300)).save(tmp_path / "big.png")
    monkeypatch.setattr(folder_module, "MAX_PIXELS", 200 * 200)
    with pytest.raises(ValueError, match="more than 40,000"):
        decode_image(tmp_path / "big.png", (28, 28), 1)


def test_default_split_is_stratified_80_10_10(folder):
    config = DataConfig(dataset=str(folder))
    data = load_run_data(config, seed=3, size=(28, 28), channels=3)
    assert (len(data.train), len(data.val), len(data.test)) == (16, 2, 2)
    for part in (data.train, data.val, data.test):
        assert np.bincount(part.labels).tolist() == [len(part) // 2] * 2
    again = load_run_data(config, seed=3, size=(28, 28), channels=3)
    np.testing.assert_array_equal(again.test.images, data.test.images)


def test_split_specs_choose_disjoint_parts(folder):
    config = DataConfig(dataset=str(folder), train_split="train[:40%]",
                        val_split="train[40%:50%]", test_split="train[50%:60%]")  # fmt: skip
    data = load_run_data(config, seed=0, size=(28, 28), channels=1)
    assert (len(data.train), len(data.val), len(data.test)) == (8, 2, 2)
    rows = {part: {img.tobytes() for img in getattr(data, part).images}
            for part in ("train", "val", "test")}  # fmt: skip
    assert not rows["train"] & rows["val"] and not rows["val"] & rows["test"]
    with pytest.raises(ValueError, match="together"):
        load_run_data(DataConfig(dataset=str(folder), train_split="train[:50%]"), 0, (28, 28), 1)


def test_not_a_folder_and_single_class(tmp_path):
    with pytest.raises(FileNotFoundError):
        scan_folder(tmp_path / "absent")
    (tmp_path / "one" / "a").mkdir(parents=True)
    Image.new("L", (8, 8)).save(tmp_path / "one" / "a" / "x.png")
    with pytest.raises(ValueError, match="at least two classes"):
        load_folder(tmp_path / "one", cache=False)
