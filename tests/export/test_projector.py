"""Projector files parse, and a real TensorBoard server reads them."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image

from tripletlab.data import load_mnist
from tripletlab.export import export_projector
from tripletlab.runs import RunDir


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("projector")
    images = load_mnist("test").images[:150]
    embeddings = np.random.default_rng(0).normal(size=(150, 16)).astype(np.float32)
    labels = [str(i % 10) for i in range(150)]
    export_projector(out, embeddings, {"label": labels}, images)
    return out, embeddings, labels, images


def test_files_parse(exported):
    out, embeddings, labels, images = exported
    vectors = np.loadtxt(out / "vecs.tsv", delimiter="\t")
    assert vectors.shape == (150, 16)
    np.testing.assert_allclose(vectors, embeddings, rtol=1e-5, atol=1e-6)
    assert (out / "meta.tsv").read_text().splitlines() == labels  # one column: no header
    sprite = Image.open(out / "sprite.png")
    assert sprite.size == (13 * 28, 13 * 28)  # ceil(sqrt(150)) = 13 thumbnails a side
    tile = np.asarray(sprite)[28:56, 2 * 28 : 3 * 28]  # row 1, column 2: image 15
    np.testing.assert_array_equal(tile, images[15])
    config = (out / "projector_config.pbtxt").read_text()
    assert 'tensor_path: "vecs.tsv"' in config and "single_image_dim: 28" in config


def test_several_metadata_columns_get_a_header(tmp_path):
    export_projector(tmp_path, np.zeros((2, 3)), {"label": ["a", "b"], "file": ["x.png", "y\tz"]})
    assert (tmp_path / "meta.tsv").read_text().splitlines() == ["label\tfile", "a\tx.png", "b\ty z"]
    assert not (tmp_path / "sprite.png").exists()
    with pytest.raises(ValueError, match="one value per embedding"):
        export_projector(tmp_path, np.zeros((2, 3)), {"label": ["a"]})


def test_every_label_keeps_its_line_and_grey_images_may_have_a_channel_axis(tmp_path):
    """An empty label was a blank line, which the projector drops (every later label moved
    up one); a carriage return split a row; (N, H, W, 1) images failed the sprite."""
    images = load_mnist("test").images[:4]
    labels = ["a", "", "b\rc", "d\r\ne"]
    export_projector(tmp_path, np.zeros((4, 3)), {"label": labels}, images[..., None])
    assert (tmp_path / "meta.tsv").read_bytes() == b"a\n(empty)\nb c\nd e\n"
    sprite = np.asarray(Image.open(tmp_path / "sprite.png"))
    np.testing.assert_array_equal(sprite[28:56, 28:56], images[3])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str, deadline: float) -> bytes:
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.read()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@pytest.mark.slow
def test_tensorboard_projector_reads_the_export(exported):
    out, embeddings, labels, _ = exported
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(out),
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}/data/plugin/projector"
        deadline = time.monotonic() + 90
        assert json.loads(_get(f"{base}/runs", deadline)) == ["."]
        info = json.loads(_get(f"{base}/info?run=.", deadline))
        (entry,) = info["embeddings"]
        assert entry["tensorShape"] == [150, 16]
        assert entry["sprite"]["singleImageDim"] == [28, 28]
        query = f"run=.&name={entry['tensorName']}"
        tensor = np.frombuffer(_get(f"{base}/tensor?{query}", deadline), dtype=np.float32)
        np.testing.assert_allclose(tensor.reshape(150, 16), embeddings, rtol=1e-5, atol=1e-6)
        metadata = _get(f"{base}/metadata?{query}", deadline).decode().splitlines()
        assert metadata == labels
        assert _get(f"{base}/sprite_image?{query}", deadline)[:4] == b"\x89PNG"
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
def test_tensorboard_on_a_run_folder_shows_scalars_and_the_projector(tmp_path, exported):
    """`tensorboard --logdir RUN_DIR`: the scalars of RUN_DIR/tensorboard and, through the
    config written into RUN_DIR, the projector files of RUN_DIR/projector."""
    from torch.utils.tensorboard import SummaryWriter

    _, embeddings, labels, images = exported
    run = RunDir(tmp_path / "run")
    with SummaryWriter(log_dir=str(run.tensorboard)) as writer:
        writer.add_scalar("train/loss", 0.5, 1)
    export_projector(run.projector, embeddings, {"label": labels}, images,
                     also_config_in=[run.path])  # fmt: skip
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(run.path),
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        base = f"http://127.0.0.1:{port}/data/plugin"
        assert "." in json.loads(_get(f"{base}/projector/runs", deadline))
        info = json.loads(_get(f"{base}/projector/info?run=.", deadline))
        (entry,) = info["embeddings"]
        query = f"run=.&name={entry['tensorName']}"
        tensor = np.frombuffer(_get(f"{base}/projector/tensor?{query}", deadline), np.float32)
        np.testing.assert_allclose(tensor.reshape(150, 16), embeddings, rtol=1e-5, atol=1e-6)
        runs = json.loads(_get(f"http://127.0.0.1:{port}/data/runs", deadline))
        assert runs == ["tensorboard"]  # the run whose scalars TensorBoard shows
    finally:
        server.terminate()
        server.wait(timeout=30)
