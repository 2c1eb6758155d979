"""Image folders built in the test: PNG and JPEG files, plus corrupt, empty and non-image ones."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tripletlab.config import DataConfig
from tripletlab.data.datasets import load_run_data
from tripletlab.data.folder import load_folder, scan_folder
from tripletlab.data.images import decode_image, load_image_file


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


def _caches(tmp_path):
    return sorted(p for p in (tmp_path / "cache" / "folders").iterdir() if p.is_dir())


def test_decoded_images_are_cached_memory_mapped(folder, tmp_path):
    first, _ = load_folder(folder, size=(16, 16), channels=1)
    assert len(_caches(tmp_path)) == 1 and isinstance(first.images, np.memmap)
    again, skipped = load_folder(folder, size=(16, 16), channels=1)
    np.testing.assert_array_equal(again.images, first.images)
    assert skipped == 4 and again.images.shape == (20, 16, 16)
    in_memory, _ = load_folder(folder, size=(16, 16), channels=1, cache=False)
    assert not isinstance(in_memory.images, np.memmap)
    for name in ("images", "labels", "sources"):
        np.testing.assert_array_equal(getattr(again, name), getattr(in_memory, name))
    assert again.class_names == in_memory.class_names
    # Touching a file changes the key: the folder is decoded again.
    (folder / "cats" / "0.jpg").write_bytes((folder / "cats" / "2.jpg").read_bytes())
    load_folder(folder, size=(16, 16), channels=1)
    assert len(_caches(tmp_path)) == 2


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    import tripletlab.data.images as images_module

    Image.new("L", (300, 300)).save(tmp_path / "big.png")
    monkeypatch.setattr(images_module, "MAX_PIXELS", 200 * 200)
    with pytest.raises(ValueError, match="more than 40,000"):
        decode_image(tmp_path / "big.png", (28, 28), 1)
    with pytest.raises(ValueError, match=r"cannot read image .*big\.png: 300 x 300 pixels"):
        load_image_file(tmp_path / "big.png", (28, 28), 1)  # `embed` has the same limit


def _grow(folder, per_class=20):
    """More images per class (the fixture's 10 leave one per class in a 10% part)."""
    rng = np.random.default_rng(1)
    for name, colour in (("cats", (200, 50, 50)), ("dogs", (50, 50, 200))):
        for i in range(10, per_class):
            pixels = np.clip(rng.normal(colour, 20, size=(40, 50, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / name / f"{i}.png")


def test_default_split_is_stratified_80_10_10(folder):
    _grow(folder)
    config = DataConfig(dataset=str(folder))
    data = load_run_data(config, seed=3, size=(28, 28), channels=3)
    assert (len(data.train), len(data.val), len(data.test)) == (32, 4, 4)
    for part in (data.train, data.val, data.test):
        assert np.bincount(part.labels).tolist() == [len(part) // 2] * 2
    again = load_run_data(config, seed=3, size=(28, 28), channels=3)
    np.testing.assert_array_equal(again.test.images, data.test.images)


@pytest.mark.parametrize(("val_fraction", "sizes"), [(0.0, (36, 0, 4)), (0.2, (28, 8, 4))])
def test_val_fraction_sets_a_folders_validation_share(folder, val_fraction, sizes):
    """The test part stays the same tenth; the validation part takes val_fraction (0: none)."""
    _grow(folder)
    default = load_run_data(DataConfig(dataset=str(folder)), seed=3, size=(28, 28), channels=1)
    config = DataConfig(dataset=str(folder), val_fraction=val_fraction)
    data = load_run_data(config, seed=3, size=(28, 28), channels=1)
    assert (len(data.train), len(data.val), len(data.test)) == sizes
    np.testing.assert_array_equal(data.test.images, default.test.images)
    with pytest.raises(ValueError, match=r"data.val_fraction 0.9 leaves a folder no training"):
        load_run_data(DataConfig(dataset=str(folder), val_fraction=0.9), 3, (28, 28), 1)


def test_names_that_are_not_utf8_are_read_and_shown(folder):
    """A Latin-1 class folder and file: the cache key and the run's config failed to encode
    them (a run could not train); the class name is shown with U+FFFD, the file still read."""
    _grow(folder)
    latin = os.fsencode(folder) + b"/caf\xe9"
    os.rename(os.fsencode(folder / "cats"), latin)
    os.rename(latin + b"/1.png", latin + b"/\xe91.png")
    data = load_run_data(DataConfig(dataset=str(folder)), seed=3, size=(28, 28), channels=1)
    assert data.train.class_names == ["caf\ufffd", "dogs"]  # birds has no readable image
    sources = [str(s) for part in (data.train, data.val, data.test) for s in part.sources]
    assert os.fsdecode(latin + b"/\xe91.png") in sources


def test_split_specs_choose_disjoint_parts(folder):
    _grow(folder)
    config = DataConfig(dataset=str(folder), train_split="train[:40%]",
                        val_split="train[40%:50%]", test_split="train[50%:60%]")  # fmt: skip
    data = load_run_data(config, seed=0, size=(28, 28), channels=1)
    assert (len(data.train), len(data.val), len(data.test)) == (16, 4, 4)
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


def test_a_damaged_or_altered_cache_is_decoded_again(folder, tmp_path, caplog):
    first = np.array(load_folder(folder, size=(16, 16), channels=1)[0].images)  # not mapped:
    (cache,) = _caches(tmp_path)  # reading a file cut short under a mapping is a SIGBUS
    saved = {path.name: path.read_bytes() for path in cache.iterdir()}
    pixels = saved["images.u8"]
    damages = [("images.u8", pixels[: len(pixels) // 2]),
               ("images.u8", pixels[:-1] + bytes([pixels[-1] ^ 1])),
               ("labels.npy", saved["labels.npy"][:-8] + bytes(8)),
               ("meta.json", b"{not json")]  # fmt: skip
    for name, damage in damages:
        (cache / name).write_bytes(damage)
        with caplog.at_level(logging.WARNING):
            again, skipped = load_folder(folder, size=(16, 16), channels=1)
        assert "is damaged" in caplog.text and skipped == 4, name
        np.testing.assert_array_equal(again.images, first)
        assert (cache / name).read_bytes() == saved[name]  # rebuilt
        caplog.clear()


def test_a_cached_decode_still_reports_the_skipped_files(folder, caplog):
    load_folder(folder, size=(16, 16), channels=1)
    with caplog.at_level(logging.WARNING):
        _, skipped = load_folder(folder, size=(16, 16), channels=1)
    assert skipped == 4 and "4 of 24 files" in caplog.text and "(cached)" in caplog.text


def test_a_read_only_cache_is_only_read(folder, tmp_path, caplog):
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(0o500)
    try:
        with caplog.at_level(logging.WARNING):
            images, skipped = load_folder(folder, size=(16, 16), channels=1)
    finally:
        cache.chmod(0o700)
    assert len(images) == 20 and skipped == 4
    if os.geteuid() != 0:  # root writes anyway
        assert "cannot write the folder cache" in caplog.text


def test_skipped_files_say_why(folder, caplog):
    with caplog.at_level(logging.WARNING):
        load_folder(folder, size=(16, 16), channels=1, cache=False)
    assert "notes.txt: not an image Pillow can read" in caplog.text
    assert "empty.png: empty file" in caplog.text and "BytesIO" not in caplog.text


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path):
    ramp = (np.arange(64, dtype=np.uint32).reshape(8, 8) * 1024).astype(np.uint16)  # 0..64512
    Image.fromarray(ramp).save(tmp_path / "ramp16.png")
    with Image.open(tmp_path / "ramp16.png") as image:
        assert image.mode.startswith("I")  # Pillow reads it as 16-bit
    for channels in (1, 3):
        pixels = decode_image(tmp_path / "ramp16.png", (8, 8), channels)
        grey = pixels if channels == 1 else pixels[..., 0]
        expected = np.rint(ramp.astype(np.float64) * 255 / 65535).astype(np.uint8)
        np.testing.assert_array_equal(grey, expected)
        assert grey.max() == 251 and grey[0, 1] == 4  # clipping would give 255 almost everywhere


def test_exif_orientation_is_applied(tmp_path):
    """A camera JPEG stored sideways with orientation 6 (rotate 90 degrees clockwise)."""
    pixels = np.zeros((20, 40), dtype=np.uint8)
    pixels[:, :10] = 255  # a white band on the left of the stored image
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(pixels).save(tmp_path / "sideways.jpg", exif=exif, quality=100)
    shown = decode_image(tmp_path / "sideways.jpg", (40, 20), 1)  # upright: 40 high, 20 wide
    assert shown.shape == (40, 20)
    assert shown[:10].mean() > 200 and shown[20:].mean() < 50  # the band is now on top


def test_a_huge_non_image_file_is_refused_without_reading_it(tmp_path):
    big = tmp_path / "huge.jpg"
    with open(big, "wb") as handle:
        handle.truncate(2 * 1024**3)  # 2 GB, sparse
    code = (
        "import re, sys; from tripletlab.data.images import decode_image\n"
        "try:\n    decode_image(sys.argv[1], (28, 28), 1)\nexcept ValueError as e:\n"
        "    print(e)\n"
        "print(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))"
    )
    result = subprocess.run([sys.executable, "-c", code, str(big)], capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    reason, peak_kib = result.stdout.splitlines()
    assert reason == "not an image Pillow can read"
    assert int(peak_kib) < 1024 * 1024  # well under the file's 2 GB


def test_percentage_split_specs_are_stratified(tmp_path, monkeypatch):
    """90 cats and 10 dogs: a 10% part holds 9 cats and 1 dog, not a chance mix."""
    monkeypatch.setenv("TRIPLETLAB_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "pets"
    for name, count in (("cats", 90), ("dogs", 10)):
        (root / name).mkdir(parents=True)
        for i in range(count):
            Image.new("L", (8, 8), color=i).save(root / name / f"{i}.png")
    config = DataConfig(dataset=str(root), train_split="train[:80%]",
                        val_split="train[80%:90%]", test_split="train[90%:]")  # fmt: skip
    for seed in range(5):
        data = load_run_data(config, seed=seed, size=(8, 8), channels=1)
        assert np.bincount(data.train.labels).tolist() == [72, 8]
        assert np.bincount(data.val.labels).tolist() == [9, 1]
        assert np.bincount(data.test.labels).tolist() == [9, 1]


def test_parts_too_small_to_measure_are_refused_before_training(tmp_path, monkeypatch):
    """Twelve images per class: the default 10% test part has one image of each class, so no
    retrieval query has a match. Refused when the data is cut, naming what to change."""
    monkeypatch.setenv("TRIPLETLAB_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "small"
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(12):
            Image.new("L", (8, 8), color=i * 10).save(root / name / f"{i}.png")
    with pytest.raises(ValueError, match=r"the validation part \(2 images\) has no class with two"):
        load_run_data(DataConfig(dataset=str(root)), seed=0, size=(8, 8), channels=1)
    config = DataConfig(dataset=str(root), train_split="train[:60%]",
                        val_split="train[60%:60%]", test_split="train[90%:]")  # fmt: skip
    with pytest.raises(ValueError, match=r"the test part \(2 images\) .*data\.test_split"):
        load_run_data(config, seed=0, size=(8, 8), channels=1)


def test_percent_and_item_specs_of_one_source_stay_disjoint(tmp_path, monkeypatch):
    """A per-class cut for the percent specs and one order for the item specs would overlap:
    with any item spec, every spec of that source slices one shuffled order."""
    monkeypatch.setenv("TRIPLETLAB_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "pets"
    for name, count in (("cats", 60), ("dogs", 40)):
        (root / name).mkdir(parents=True)
        for i in range(count):
            Image.new("L", (8, 8), color=i + (0 if name == "cats" else 100)).save(
                root / name / f"{i}.png"
            )
    config = DataConfig(dataset=str(root), train_split="train[:80%]",
                        val_split="train[80%:-10]", test_split="train[-10:]")  # fmt: skip
    data = load_run_data(config, seed=0, size=(8, 8), channels=1)
    rows = {part: {img.tobytes() for img in getattr(data, part).images}
            for part in ("train", "val", "test")}  # fmt: skip
    assert len(rows["train"]) == 80 and len(rows["test"]) == 10 and len(rows["val"]) == 10
    assert not rows["train"] & rows["test"] and not rows["train"] & rows["val"]


def test_damaged_metadata_is_no_warning_when_the_pixels_decode(tmp_path):
    """Pillow warns about damaged EXIF and decodes the pixels: no warning leaks out."""
    import warnings

    exif = Image.Exif()
    exif[0x010F] = "camera"
    Image.new("L", (20, 20), color=90).save(tmp_path / "photo.jpg", exif=exif)
    blob = bytearray((tmp_path / "photo.jpg").read_bytes())
    start = blob.index(b"Exif")
    blob[start + 10 : start + 14] = b"\xff\xff\xff\x7f"  # an IFD offset past the end
    (tmp_path / "photo.jpg").write_bytes(bytes(blob))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pixels = decode_image(tmp_path / "photo.jpg", (20, 20), 1)
    assert pixels.shape == (20, 20) and caught == []
