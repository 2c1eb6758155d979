"""Memory-mapped decodes: subsets, released pages, and training from the map."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.numpy import load_file
from typer.testing import CliRunner

from tripletlab.cli.main import app
from tripletlab.data import load_mnist, pixel_cache
from tripletlab.data.images import ImageSet
from tripletlab.data.pixel_cache import RowReader, take_rows, training_rows
from tripletlab.utils.pages import release_pages


def _resident_kb() -> int:
    status = Path("/proc/self/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1])


def test_large_subsets_of_a_map_are_mapped_and_equal(tmp_path, monkeypatch):
    monkeypatch.setenv("TRIPLETLAB_CACHE", str(tmp_path / "cache"))
    pixels = np.random.default_rng(0).integers(0, 256, (3000, 32, 32), dtype=np.uint8)
    stored = np.memmap(tmp_path / "pixels.u8", dtype=np.uint8, mode="w+", shape=pixels.shape)
    stored[:] = pixels
    stored.flush()
    images = ImageSet(np.memmap(tmp_path / "pixels.u8", dtype=np.uint8, mode="c",
                                shape=pixels.shape), np.arange(3000) % 7)  # fmt: skip
    order = np.random.default_rng(1).permutation(3000)[:2500]
    monkeypatch.setattr(pixel_cache, "MAPPED_SUBSET_BYTES", 1 << 20)  # 2.5 MB: mapped
    monkeypatch.setattr(pixel_cache, "_CHUNK_BYTES", 100 << 10)  # filled in 26 chunks
    part = images.subset(order)
    assert isinstance(part.images, np.memmap)
    np.testing.assert_array_equal(part.images, pixels[order])
    np.testing.assert_array_equal(part.labels, order % 7)
    (written,) = tmp_path.glob("subset-*.u8")  # beside its source, shared by later runs
    stamp = written.stat().st_mtime_ns
    np.testing.assert_array_equal(images.subset(order).images, pixels[order])
    assert written.stat().st_mtime_ns == stamp and len(list(tmp_path.glob("*.tmp"))) == 0
    np.testing.assert_array_equal(part.subset(np.arange(2500)[::-1]).images, pixels[order][::-1])
    small = take_rows(images.images, order[:100])  # 100 KB: in memory
    assert not isinstance(small, np.memmap)
    np.testing.assert_array_equal(small, pixels[order[:100]])
    assert not isinstance(take_rows(pixels, order), np.memmap)  # not a map: plain indexing
    with tempfile.TemporaryFile() as handle:  # a map of no named file (as a read-only
        unnamed = np.memmap(handle, dtype=np.uint8, mode="w+", shape=pixels.shape)  # cache's)
    unnamed[:] = pixels
    again = take_rows(unnamed, order)  # an unlinked file of its own in the cache folder
    assert isinstance(again, np.memmap) and again.filename is None
    np.testing.assert_array_equal(again, pixels[order])


def test_released_pages_leave_resident_memory_and_keep_their_values(tmp_path):
    shape = (64, 1024, 1024)  # 64 MiB
    stored = np.memmap(tmp_path / "big.u8", dtype=np.uint8, mode="w+", shape=shape)
    stored[::7] = 3
    stored.flush()
    mapped = np.memmap(tmp_path / "big.u8", dtype=np.uint8, mode="c", shape=shape)
    before = _resident_kb()
    total = int(mapped.sum(dtype=np.int64))  # touches every page
    touched = _resident_kb()
    release_pages(mapped[5:9])  # a view releases its whole map
    released = _resident_kb()
    assert touched - before > 48 << 10 and touched - released > 48 << 10
    assert int(mapped.sum(dtype=np.int64)) == total == 3 * 10 * 1024 * 1024
    release_pages(np.zeros(3))  # not a map: nothing happens


@pytest.fixture(scope="module")
def digit_folder(tmp_path_factory):
    """600 MNIST digits as PNG files, one folder per digit."""
    root = tmp_path_factory.mktemp("digits") / "digits"
    mnist = load_mnist("train")
    for index in range(600):
        folder = root / str(mnist.labels[index])
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(mnist.images[index]).save(folder / f"{index}.png")
    return root


def _train(folder, run, cache, monkeypatch):
    monkeypatch.setenv("TRIPLETLAB_CACHE", str(cache))
    args = ["train", "--dataset", str(folder), "--epochs", "1", "--no-report",
            "--run-dir", str(run)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    state = load_file(run / "checkpoints" / "epoch-0001" / "state.safetensors")
    return state, json.loads((run / "metrics.json").read_text())


def test_training_from_the_map_is_training_from_memory(digit_folder, tmp_path, monkeypatch):
    """The same batches, so the same steps: a run on the memory-mapped decode (subsets mapped
    too) and one decoded into memory (no cache folder can be made: even root cannot make one
    inside a file) end with equal weights."""
    monkeypatch.setattr(pixel_cache, "MAPPED_SUBSET_BYTES", 64 << 10)
    mapped = _train(digit_folder, tmp_path / "mapped", tmp_path / "cache", monkeypatch)
    assert any(p.is_dir() for p in (tmp_path / "cache" / "folders").iterdir())
    (tmp_path / "file").write_text("not a folder")
    in_memory = _train(digit_folder, tmp_path / "memory", tmp_path / "file" / "cache", monkeypatch)
    for key, value in mapped[0].items():
        np.testing.assert_array_equal(in_memory[0][key], value, err_msg=key)
    assert mapped[1]["map_at_r"] == in_memory[1]["map_at_r"]


def test_training_reads_rows_of_a_named_map_from_its_file(tmp_path):
    pixels = np.random.default_rng(2).integers(0, 256, (50, 6, 5, 3), dtype=np.uint8)
    pixels.tofile(tmp_path / "rows.u8")
    mapped = np.memmap(tmp_path / "rows.u8", dtype=np.uint8, mode="c", shape=pixels.shape)
    reader = training_rows(mapped)
    assert isinstance(reader, RowReader) and len(reader) == 50
    batch = torch.tensor([7, 0, 49, 7])
    torch.testing.assert_close(reader[batch], torch.from_numpy(pixels[[7, 0, 49, 7]]))
    with pytest.raises(IndexError, match="row 50 of 50"):
        reader[torch.tensor([50])]
    plain = training_rows(pixels)  # in memory: the array itself as a tensor
    assert isinstance(plain, torch.Tensor) and plain.data_ptr() == pixels.ctypes.data
