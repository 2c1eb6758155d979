"""Files for TensorBoard's Embedding Projector: vecs.tsv, meta.tsv, sprite.png and its config.

projector.tensorflow.org loads the two TSV files; `tensorboard --logdir DIR` reads
`projector_config.pbtxt`, which points at all three.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from tripletlab.evaluation import load_run
from tripletlab.runs import PROJECTOR_CONFIG
from tripletlab.utils.io import atomic_write_bytes

TENSOR_NAME = "embeddings"
# TensorBoard refuses sprites larger than 8192 x 8192 pixels.
_MAX_SPRITE_SIDE = 8192


def write_vectors(path: Path, embeddings: np.ndarray) -> None:
    """One embedding per line, values separated by tabs."""
    buffer = io.StringIO()
    np.savetxt(buffer, np.asarray(embeddings, dtype=np.float32), delimiter="\t", fmt="%.6g")
    atomic_write_bytes(path, buffer.getvalue().encode())


def write_metadata(path: Path, columns: dict[str, Sequence[str]]) -> None:
    """One row per embedding: a single column without header, several with a header row.
    Tabs and line breaks in values become spaces, and an empty value is "(empty)": the
    projector drops blank lines, which would shift every label after them."""
    names = list(columns)
    rows = zip(*(columns[name] for name in names), strict=True)
    clean = [[_cell(v) for v in row] for row in rows]
    lines = ["\t".join(names)] if len(names) > 1 else []
    lines += ["\t".join(row) for row in clean]
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())


def _cell(value: object) -> str:
    text = " ".join(str(value).replace("\t", " ").splitlines())
    return text if text.strip() else "(empty)"


def write_sprite(path: Path, images: np.ndarray) -> tuple[int, int]:
    """Tile images row-major into a square sprite; returns the thumbnail (height, width).

    Thumbnails shrink (keeping the aspect ratio) only when the sprite would exceed 8192 px.
    """
    if images.ndim == 4 and images.shape[3] == 1:  # (N, H, W, 1): grey
        images = images[..., 0]
    count, height, width = images.shape[:3]
    per_side = max(1, math.ceil(math.sqrt(count)))
    scale = min(1.0, _MAX_SPRITE_SIDE / (per_side * max(height, width)))
    thumb_h, thumb_w = max(1, int(height * scale)), max(1, int(width * scale))
    mode = "L" if images.ndim == 3 else "RGB"
    sprite = Image.new(mode, (per_side * thumb_w, per_side * thumb_h))
    for index, pixels in enumerate(images):
        tile = Image.fromarray(pixels, mode=mode)
        if (thumb_h, thumb_w) != (height, width):
            tile = tile.resize((thumb_w, thumb_h), Image.Resampling.BILINEAR)
        row, col = divmod(index, per_side)
        sprite.paste(tile, (col * thumb_w, row * thumb_h))
    buffer = io.BytesIO()
    sprite.save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())
    return thumb_h, thumb_w


def export_projector(
    out_dir: Path,
    embeddings: np.ndarray,
    metadata: dict[str, Sequence[str]],
    images: np.ndarray | None = None,
    also_config_in: Sequence[Path] = (),
) -> Path:
    """Write the projector files into `out_dir` and return it.

    Args:
        out_dir: the folder (created if needed); also a valid `tensorboard --logdir`.
        embeddings: (N, D).
        metadata: column name -> N values (e.g. {"label": [...], "file": [...]}).
        images: optional uint8 (N, H, W[, C]) for the sprite.
        also_config_in: more folders to write `projector_config.pbtxt` into, pointing at the
            files in `out_dir`, which must lie inside them (TensorBoard refuses paths outside a
            config's folder): the run folder, so that `tensorboard --logdir RUN_DIR` shows the
            projector beside the scalars.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if any(len(values) != len(embeddings) for values in metadata.values()):
        raise ValueError("every metadata column needs one value per embedding")
    write_vectors(out_dir / "vecs.tsv", embeddings)
    write_metadata(out_dir / "meta.tsv", metadata)
    thumb = write_sprite(out_dir / "sprite.png", images) if images is not None else None
    for folder in (out_dir, *map(Path, also_config_in)):
        folder.mkdir(parents=True, exist_ok=True)
        text = _config_text(out_dir, folder, thumb)
        atomic_write_bytes(folder / PROJECTOR_CONFIG, text.encode())
    return out_dir


def _config_text(out_dir: Path, folder: Path, thumb: tuple[int, int] | None) -> str:
    """The projector config read in `folder`, its paths relative to it (TensorBoard resolves
    them from the config file's folder)."""

    def where(name: str) -> str:
        return os.path.relpath(out_dir / name, folder)

    config = [
        "embeddings {",
        f'  tensor_name: "{TENSOR_NAME}"',
        f'  tensor_path: "{where("vecs.tsv")}"',
        f'  metadata_path: "{where("meta.tsv")}"',
    ]
    if thumb is not None:
        config += [
            "  sprite {",
            f'    image_path: "{where("sprite.png")}"',
            f"    single_image_dim: {thumb[1]}",
            f"    single_image_dim: {thumb[0]}",
            "  }",
        ]
    return "\n".join([*config, "}"]) + "\n"


def export_run_projector(
    run_dir: Path, split: str = "test", limit: int | None = None, out: Path | None = None
) -> Path:
    """Embed a split of a run's data with its best checkpoint and export it for the projector.

    The projector config is also written into the run folder itself (when the files go inside
    it), so that `tensorboard --logdir RUN_DIR` shows the projector beside the training
    scalars.

    Args:
        run_dir: the run folder.
        split: "test", "train" or "val" (the parts the run was trained and validated on).
        limit: N images of the split drawn at random (seed 0), in the split's order; the first
            N of a folder's split would be its first classes only.
        out: output folder (default `RUN_DIR/projector`).
    """
    run, data, embedder = load_run(run_dir)
    parts = {"test": data.test, "train": data.train, "val": data.val}
    if split not in parts:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(parts)}")
    images = parts[split]
    if limit is not None:
        if limit < 1:
            raise ValueError(f"--limit must be at least 1, got {limit}")
        if limit < len(images):
            chosen = np.random.default_rng(0).choice(len(images), limit, replace=False)
            images = images.subset(np.sort(chosen))
    names = images.class_names
    labels = [names[y] if 0 <= y < len(names) else str(y) for y in images.labels]
    embeddings = embedder.embed(images.images)
    out = Path(out or run.projector)
    inside = out.resolve().is_relative_to(run.path.resolve())
    return export_projector(out, embeddings, {"label": labels}, images.images,
                            also_config_in=[run.path] if inside else [])  # fmt: skip
