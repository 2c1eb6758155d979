"""Does transfer beat training from scratch on a small data set? Measured on MNIST.

1. Train a `resnet_small` backbone on digits 0-4 (online semi-hard, PK batches).
2. Learn digits 5-9 from only 50 training images per class, three ways:
   scratch (random init), frozen transferred backbone + new head, and the same followed by
   fine-tuning everything at a very low learning rate (BatchNorm kept in inference mode).
3. Report MAP@R (and Precision@1) on the 4,861 MNIST test images of digits 5-9.

Run with `make transfer-demo`; results go to `runs/transfer-demo/results.{json,md}`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tripletlab.config import RunConfig, merge
from tripletlab.training import train_run

SOURCE_CLASSES = [0, 1, 2, 3, 4]
TARGET_CLASSES = [5, 6, 7, 8, 9]


def _config(**sections) -> RunConfig:
    base = {
        "model": {"backbone": "resnet_small", "embedding_dim": 64},
        "loss": {"name": "semihard", "margin": 0.5},
        "train": {"sampler": "pk", "batch_size": 40, "samples_per_class": 8, "seed": 0},
    }
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values} if isinstance(values, dict) else values
    return merge(RunConfig(), base)


def _clear(out: Path) -> None:
    """Empty the demo's own folder, so that a re-run replaces it; refuse any other folder."""
    if not out.exists():
        return
    if not out.is_dir():
        raise SystemExit(f"--out {out} is a file: choose a folder")
    own = {"results.json", "results.md", "source-0-4", "scratch", "frozen-backbone-and-new-head",
           "frozen-and-fine-tuned"}  # fmt: skip
    foreign = sorted(child.name for child in out.iterdir() if child.name not in own)
    if foreign:
        raise SystemExit(f"--out {out} is not the demo's ({', '.join(foreign[:3])}): choose "
                         "another folder")  # fmt: skip
    shutil.rmtree(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/transfer-demo"))
    parser.add_argument("--source-limit", type=int, default=12000, help="digits 0-4 images")
    parser.add_argument("--source-epochs", type=int, default=3)
    parser.add_argument("--per-class", type=int, default=50, help="digits 5-9 images per class")
    parser.add_argument("--head-epochs", type=int, default=30)
    parser.add_argument("--finetune-epochs", type=int, default=15)
    args = parser.parse_args()
    console = Console(stderr=True)
    _clear(args.out)

    start = time.perf_counter()
    source = train_run(_config(
        data={"classes": SOURCE_CLASSES, "limit": args.source_limit, "val_fraction": 0.05},
        train={"epochs": args.source_epochs},
    ), args.out / "source-0-4", console)  # fmt: skip
    console.print(f"source backbone (digits 0-4): MAP@R {source.metrics['map_at_r']:.4f}")

    target = {"classes": TARGET_CLASSES, "per_class": args.per_class, "val_fraction": 0.0}
    weights = {"backbone_weights": str(source.run_dir)}
    head = {"epochs": args.head_epochs, "lr": 1e-3, "freeze": "backbone"}
    finetune = {"epochs": args.finetune_epochs, "lr": 1e-5, "freeze": "none"}
    total = args.head_epochs + args.finetune_epochs
    ways = {
        "scratch": _config(data=target, phases=[{"epochs": total, "lr": 1e-3}]),
        "frozen backbone + new head": _config(data=target, model=weights, phases=[head]),
        "frozen + fine-tuned": _config(data=target, model=weights, phases=[head, finetune]),
    }
    results = {}
    for name, config in ways.items():
        run = train_run(config, args.out / name.replace(" ", "-").replace("+", "and"), console)
        results[name] = {k: run.metrics[k] for k in ("map_at_r", "precision_at_1", "train_seconds")}
    table = Table(title=f"Digits 5-9 from {args.per_class} images per class "
                        f"(MNIST test, {run.metrics['num_test']:,} images)")  # fmt: skip
    for column in ("way", "MAP@R", "Precision@1", "train s"):
        table.add_column(column)
    for name, row in results.items():
        table.add_row(name, f"{row['map_at_r']:.4f}", f"{row['precision_at_1']:.4f}",
                      f"{row['train_seconds']:.1f}")  # fmt: skip
    Console().print(table)
    summary = {"settings": vars(args) | {"out": str(args.out)}, "results": results,
               "seconds": time.perf_counter() - start}  # fmt: skip
    (args.out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = ["| way | MAP@R | Precision@1 | train s |", "|---|---|---|---|"]
    for name, row in results.items():
        lines.append(f"| {name} | {row['map_at_r']:.4f} | {row['precision_at_1']:.4f} | "
                     f"{row['train_seconds']:.1f} |")  # fmt: skip
    (args.out / "results.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
