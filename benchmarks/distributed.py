"""Distributed training (torchrun, gloo) and data larger than memory, measured here.

1. throughput: the default recipe on 20,000 MNIST training images, one epoch, run as one
   process and as `--nproc 2`, alternating (A B A B); images per second of training, the ratio
   2 processes / 1, and both runs' MAP@R (they train the same steps). On a 2-core machine
   two processes cannot be faster: the ratio is the overhead of splitting a batch of 32.
2. communication: the bytes each rank sends and receives per step, from the real models'
   sizes (default recipe and `--preset accurate`) on 2 ranks here, and projected for 8 GPUs
   at a global batch of 256 x 8 with D = 256: the embedding all-gather (rows of every rank,
   padded to the longest), labels, DDP's ring all-reduce of the gradients, and the BatchNorm
   statistics of `GlobalBatchNorm2d` (with `+ce` losses the logits are gathered too: B x
   classes floats more).
3. memory: a folder of N images (default 1,000,000 of 64 x 64 RGB, 12 GB of pixels) written
   once, then `tripletlab train` on it (one epoch, the default network; small validation and
   test parts, which are not what this measures) with its resident memory sampled every 0.5 s
   from /proc: peak RSS and its anonymous part (the process's own memory) and file part (pages
   of the memory-mapped cache). Goal: peak RSS under 4 GB.

Run: `python benchmarks/distributed.py [--part NAME]... [--images N] [--folder DIR]` (in
benchmarks/; the folder defaults to ../.bench/folder-N and is kept). `make bench` runs the
first two parts; the third needs about 30 GB of disk and most of an hour on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import console, show

ROOT = Path(__file__).resolve().parent.parent


def _train(args: list[str], run: Path, env: dict | None = None) -> dict:
    command = [sys.executable, "-m", "tripletlab", "train", *args, "--no-report",
               "--run-dir", str(run)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    epoch = json.loads((run / "history.json").read_text())["epochs"][0]
    metrics = json.loads((run / "metrics.json").read_text())
    return {"images_per_second": epoch["images_per_second"], "map_at_r": metrics["map_at_r"]}


def throughput(rounds: int = 2) -> None:
    base = ["--limit", "20000", "--epochs", "1"]
    results: dict[str, list[dict]] = {"1 process": [], "2 processes (--nproc 2)": []}
    with tempfile.TemporaryDirectory() as folder:
        for round_ in range(rounds):
            for name, extra in (("1 process", []), ("2 processes (--nproc 2)", ["--nproc", "2"])):
                run = Path(folder) / f"{len(results[name])}-{round_}-{len(extra)}"
                results[name].append(_train([*base, *extra], run))
    one = float(np.median([r["images_per_second"] for r in results["1 process"]]))
    rows = []
    for name, runs in results.items():
        speed = float(np.median([r["images_per_second"] for r in runs]))
        rows.append([name, speed, speed / one, runs[0]["map_at_r"]])
    show("default recipe, 20,000 MNIST images, batch 32, 1 epoch (median of "
         f"{rounds}, alternating)", ["launch", "train images/s", "ratio to 1 process",
                                     "test MAP@R"], rows)  # fmt: skip


def _step_bytes(params: int, batch: int, dim: int, world: int,
                norm_channels: int) -> dict[str, float]:  # fmt: skip
    """Bytes one rank sends plus receives in one step (ring algorithms, float32, int64)."""
    rows = -(-batch // world)  # padded to the longest part
    gather = 2 * (world - 1) * rows  # rows sent to and received from each other rank
    return {
        "embeddings all-gather": gather * dim * 4,
        "labels + row counts": gather * 8 + 2 * (world - 1) * 8,
        "gradient all-reduce (DDP)": 2 * 2 * (world - 1) / world * params * 4,
        "BatchNorm statistics": 4 * 2 * 2 * (world - 1) / world * norm_channels * 4,
    }


def communication() -> None:
    from tripletlab.config import RunConfig, merge, preset
    from tripletlab.models import Embedder

    setups = []
    for name, overrides in (("default", {}), ("accurate", preset("accurate"))):
        config = merge(RunConfig(), overrides)
        model = Embedder(config.model)
        params = sum(p.numel() for p in model.parameters())
        norm = sum(m.num_features + 1 for m in model.modules() if hasattr(m, "running_mean"))
        setups.append((name, config, params, norm))
    rows = []
    for name, config, params, norm in setups:
        for world, batch, dim, label in (
            (2, config.train.batch_size, config.model.embedding_dim, "2 ranks"),
            (8, 256 * 8, 256, "8 GPUs, batch 256 x 8, D 256"),
        ):
            parts = _step_bytes(params, batch, dim, world, norm)
            rows.append([name, label, f"{params:,}", *(f"{v / 1024:,.1f}" for v in parts.values()),
                         f"{sum(parts.values()) / 2**20:,.2f}"])  # fmt: skip
    show(
        "bytes per step and rank (KiB; sent + received)",
        [
            "model",
            "setting",
            "parameters",
            "embeddings",
            "labels",
            "gradients",
            "BatchNorm",
            "total MiB",
        ],
        rows,
    )
    gathered = 2048 * 256 * 4
    console.print(
        f"8 GPUs: each step all-gathers (2048 x 256) float32 embeddings, {gathered / 2**20:.0f} "
        f"MiB in all (each GPU receives 7/8 of it); the rows grow with the batch, the "
        "gradients with the backbone: a ResNet-50's 25.6 M parameters would all-reduce "
        f"{2 * 2 * 7 / 8 * 25.6e6 * 4 / 2**20:,.0f} MiB per GPU and step."
    )


def _write_folder(root: Path, count: int, size: int, classes: int = 100) -> None:
    """`count` PNG images of size x size RGB in `classes` folders: a class's colour gradient
    with a per-image shift (small files, fast to write)."""
    from PIL import Image

    marker = root / ".complete"
    if marker.exists():
        return
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 1, size, dtype=np.float32)
    colours = rng.integers(30, 226, (classes, 3))
    start = time.perf_counter()
    for index in range(count):
        label = index % classes
        folder = root / f"class{label:03d}"
        if index < classes:
            folder.mkdir(parents=True, exist_ok=True)
        shift = (index // classes) % size
        pattern = np.roll(ramp, shift)[:, None] * np.roll(ramp, label)[None, :]
        image = (pattern[..., None] * colours[label]).astype(np.uint8)
        Image.fromarray(image).save(folder / f"{index:07d}.png", compress_level=1)
        if (index + 1) % 100_000 == 0:
            console.print(f"  wrote {index + 1:,} images ({time.perf_counter() - start:.0f} s)")
    marker.write_text("done\n")


def _memory_of(pid: int) -> dict[str, int]:
    """VmRSS, its peak VmHWM, RssAnon and RssFile of a process, in KiB (zeros once it is
    gone)."""
    values = {"VmRSS": 0, "VmHWM": 0, "RssAnon": 0, "RssFile": 0}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key = line.split(":")[0]
            if key in values:
                values[key] = int(line.split()[1])
    except (OSError, ValueError):
        pass
    return values


def memory(images: int, folder: Path | None) -> None:
    folder = folder or ROOT / ".bench" / f"folder-{images}"
    console.print(f"folder {folder}: {images:,} images of 64 x 64 RGB")
    start = time.perf_counter()
    _write_folder(folder, images, 64)
    console.print(f"folder ready in {time.perf_counter() - start:.0f} s")
    with tempfile.TemporaryDirectory() as scratch:
        run = Path(scratch) / "run"
        env = dict(os.environ, TRIPLETLAB_CACHE=str(Path(scratch) / "cache"))
        command = [sys.executable, "-m", "tripletlab", "train", "--dataset", str(folder),
                   "--image-size", "64", "--channels", "3", "--epochs", "1", "--no-report",
                   "--batch-size", "64", "--run-dir", str(run),
                   "--set", "data.val_split=train[:2000]",
                   "--set", "data.test_split=train[2000:4000]",
                   "--set", "data.train_split=train[4000:]"]  # fmt: skip
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)  # fmt: skip
        peak = {"VmRSS": 0, "VmHWM": 0, "RssAnon": 0, "RssFile": 0}
        while process.poll() is None:
            sample = _memory_of(process.pid)
            peak = {key: max(peak[key], sample[key]) for key in peak}
            time.sleep(0.5)
        seconds = time.perf_counter() - start
        errors = process.stderr.read() if process.stderr else ""
        if process.returncode != 0:
            raise SystemExit(f"training failed:\n{errors[-3000:]}")
        history = json.loads((run / "history.json").read_text())
        cache = sum(p.stat().st_size for p in (Path(scratch) / "cache").rglob("*") if p.is_file())
    epoch = history["epochs"][0]
    show(f"train on {images:,} images of 64 x 64 x 3 ({images * 64 * 64 * 3 / 1e9:.1f} GB of "
         "pixels), one epoch", ["peak RSS GiB (kernel's)", "anonymous GiB", "mapped files GiB",
                                "cache on disk GB", "train images/s", "whole command s"],
         [[peak["VmHWM"] / 2**20, peak["RssAnon"] / 2**20, peak["RssFile"] / 2**20,
           cache / 1e9, epoch["images_per_second"], seconds]])  # fmt: skip
    console.print(
        "anonymous: the process's own memory; mapped files: shared libraries and the "
        "pages of the image cache in use (each the peak of samples every 0.5 s)"
    )
    verdict = "met" if peak["VmHWM"] < 4 * 2**20 else "NOT met"
    console.print(f"goal: peak resident memory under 4 GB: {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", action="append", help="communication, throughput, memory "
                        "(repeatable; default all)")  # fmt: skip
    parser.add_argument("--images", type=int, default=1_000_000, help="images of the folder")
    parser.add_argument("--folder", type=Path, help="where the folder is written (kept)")
    args = parser.parse_args()
    parts = args.part or ["communication", "throughput", "memory"]
    if "communication" in parts:
        communication()
    if "throughput" in parts:
        throughput()
    if "memory" in parts:
        memory(args.images, args.folder)


if __name__ == "__main__":
    main()
