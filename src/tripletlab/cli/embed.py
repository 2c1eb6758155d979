"""`tripletlab embed`: image files to a .npy array of embeddings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from tripletlab.cli.common import console, user_errors
from tripletlab.models import Embedder
from tripletlab.models.engines import select_engine
from tripletlab.search import read_images
from tripletlab.utils.io import atomic_writer


def embed(
    run_dir: Annotated[Path, typer.Argument(help="A run or checkpoint folder.")],
    images: Annotated[
        list[str], typer.Argument(help="Image files, or references such as mnist:test:0.")
    ],
    out: Annotated[Path, typer.Option(help="Output .npy file (N, D) float32.")] = Path("vecs.npy"),
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 256,
    engine: Annotated[str, typer.Option(help="torch, or onnx (RUN_DIR/model.onnx).")] = "torch",
) -> None:
    """Embed images (files resized and converted to the model's input, or a data set's
    images by reference) into a .npy array, in the order given."""
    with user_errors():
        if out.is_dir():
            raise ValueError(f"--out {out} is a folder: name a file, e.g. {out / 'vecs.npy'}")
        embedder = Embedder.from_pretrained(run_dir)
        size, channels = embedder.config.image_size, embedder.config.channels
        pixels = read_images(images, size, channels)
        vectors = select_engine(embedder, run_dir, engine).embed(pixels, batch_size=batch_size)
        out = out if out.suffix == ".npy" else out.with_name(out.name + ".npy")  # as np.save does
        with atomic_writer(out) as handle:  # a failed write leaves the old file whole
            np.save(handle, vectors, allow_pickle=False)
    console.print(f"wrote {vectors.shape[0]} x {vectors.shape[1]} embeddings to {out}")  # fmt: skip
