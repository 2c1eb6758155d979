"""`tripletlab train`: train, evaluate on the test set, write the run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from tripletlab.cli.common import console, err_console, metrics_table, user_errors
from tripletlab.config import PRESETS, RunConfig, load_yaml, merge
from tripletlab.config import preset as preset_overrides
from tripletlab.evaluation import format_per_class
from tripletlab.training import train_run
from tripletlab.viz import build_report

_PRESET_NAMES = ", ".join(sorted(PRESETS))


def _overrides(**flags: Any) -> dict[str, dict[str, Any]]:
    sections = {
        "data": (
            "dataset",
            "limit",
            "val_fraction",
            "train_split",
            "val_split",
            "test_split",
            "classes",
            "per_class",
        ),
        "model": (
            "backbone",
            "embedding_dim",
            "head",
            "normalize",
            "backbone_weights",
            "image_size",
            "channels",
            "flip",
            "rotation",
            "translate",
            "tta_shift",
        ),
        "loss": ("name", "margin", "distance", "soft"),
        "train": (
            "mode",
            "triplets",
            "mine_every",
            "epochs",
            "batch_size",
            "sampler",
            "samples_per_class",
            "lr",
            "schedule",
            "seed",
            "ema",
            "bn_train",
        ),
    }
    missing = set(flags) - {key for keys in sections.values() for key in keys}
    if missing:  # a flag without a section would be dropped silently
        raise RuntimeError(f"flags without a config section: {sorted(missing)}")
    return {name: {key: flags[key] for key in keys} for name, keys in sections.items()}


def train(
    preset: Annotated[
        str | None, typer.Option(help=f"Named recipe under the flags: {_PRESET_NAMES}.")
    ] = None,
    mode: Annotated[
        str | None, typer.Option(help="online (mining in the batch) or triplets (explicit).")
    ] = None,
    triplets: Annotated[
        str | None, typer.Option(help="Triplet generation: random, semihard or hard.")
    ] = None,
    mine_every: Annotated[
        int | None, typer.Option(help="Re-mine triplets every N steps (default: each epoch).")
    ] = None,
    dataset: Annotated[
        str | None, typer.Option(help="mnist, or a folder with one sub-folder per class.")
    ] = None,
    train_split: Annotated[str | None, typer.Option(help='e.g. "train[:40%]".')] = None,
    val_split: Annotated[str | None, typer.Option(help='e.g. "train[40%:50%]".')] = None,
    test_split: Annotated[str | None, typer.Option(help='e.g. "train[50%:60%]".')] = None,
    classes: Annotated[
        str | None, typer.Option(help="Keep only these class ids, e.g. 0,1,2,3,4.")
    ] = None,
    per_class: Annotated[
        int | None, typer.Option(help="At most N training images per class.")
    ] = None,
    image_size: Annotated[int | None, typer.Option(help="Resize images to N x N.")] = None,
    channels: Annotated[int | None, typer.Option(help="1 (grey) or 3 (RGB).")] = None,
    backbone_weights: Annotated[
        str | None, typer.Option(help="Start the backbone from a run, .safetensors or .pt.")
    ] = None,
    bn_train: Annotated[
        bool | None,
        typer.Option("--bn-train/--bn-inference", help="BatchNorm mode while fine-tuning."),
    ] = None,
    flip: Annotated[bool | None, typer.Option("--flip/--no-flip", help="Random flips.")] = None,
    rotation: Annotated[float | None, typer.Option(help="Random rotation, degrees.")] = None,
    translate: Annotated[float | None, typer.Option(help="Random shift, fraction.")] = None,
    tta_shift: Annotated[
        int | None, typer.Option(help="Test-time views: also embed copies shifted by N pixels.")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Backbone, e.g. seed_cnn.")] = None,
    loss: Annotated[str | None, typer.Option(help="semihard, hard or batch-all.")] = None,
    margin: Annotated[float | None, typer.Option(help="Triplet margin.")] = None,
    distance: Annotated[str | None, typer.Option(help="L2, squared-L2 or angular.")] = None,
    soft: Annotated[bool | None, typer.Option("--soft", help="Soft margin (hard loss).")] = None,
    embedding_dim: Annotated[int | None, typer.Option(help="Embedding size D.")] = None,
    head: Annotated[
        bool | None, typer.Option("--head/--no-head", help="Linear head on the backbone.")
    ] = None,
    normalize: Annotated[
        bool | None,
        typer.Option("--normalize/--no-normalize", help="L2-normalize the embeddings."),
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Training epochs.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Images per batch.")] = None,
    sampler: Annotated[str | None, typer.Option(help="shuffle or pk.")] = None,
    samples_per_class: Annotated[int | None, typer.Option(help="K of PK batches.")] = None,
    lr: Annotated[float | None, typer.Option(help="Adam learning rate.")] = None,
    schedule: Annotated[
        str | None, typer.Option(help="constant, or cosine decay to 0 over training.")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    ema: Annotated[
        float | None,
        typer.Option(help="Validate and save a moving average of the weights with this decay."),
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Use only N training images.")] = None,
    val_fraction: Annotated[
        float | None, typer.Option(help="Share of training images held out for validation.")
    ] = None,
    run_dir: Annotated[
        Path | None, typer.Option(help="Run folder (default: a new one under runs/).")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="YAML run config; flags override it.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the resolved config (YAML) and exit.")
    ] = False,
    report: Annotated[bool, typer.Option(help="Write report.md and plots/ at the end.")] = True,
) -> None:
    """Train an embedding network with a triplet loss; evaluate it on the MNIST test set.

    Defaults are the TF Addons tutorial's recipe: seed_cnn, semi-hard, margin 1.0, L2, Adam 1e-3, shuffled batches of 32, 5 epochs.
    """  # noqa: E501
    with user_errors():
        resolved = RunConfig()
        if preset is not None:
            resolved = merge(resolved, preset_overrides(preset))
        if config is not None:
            resolved = merge(resolved, load_yaml(config))
        class_ids = None if classes is None else [int(c) for c in classes.split(",") if c.strip()]
        flags = _overrides(
            train_split=train_split, val_split=val_split, test_split=test_split,
            classes=class_ids, per_class=per_class, image_size=image_size, channels=channels,
            backbone_weights=backbone_weights, bn_train=bn_train, flip=flip, rotation=rotation,
            translate=translate, tta_shift=tta_shift,
            dataset=dataset, limit=limit, val_fraction=val_fraction, backbone=model,
            embedding_dim=embedding_dim, head=head, normalize=normalize, name=loss, margin=margin,
            distance=distance, soft=soft, mode=mode, triplets=triplets, mine_every=mine_every,
            epochs=epochs, batch_size=batch_size, sampler=sampler,
            samples_per_class=samples_per_class, lr=lr, schedule=schedule, seed=seed, ema=ema,
        )  # fmt: skip
        resolved = merge(resolved, flags)
        if dry_run:
            typer.echo(yaml.safe_dump(resolved.to_dict(), sort_keys=False), nl=False)
            return
        result = train_run(resolved, run_dir, console=err_console)
    metrics = result.metrics
    console.print(format_per_class(metrics["per_class"]), highlight=False)
    name = "MNIST" if resolved.data.dataset == "mnist" else resolved.data.dataset
    console.print(metrics_table(metrics, f"{name} test set ({metrics['num_test']:,} images)"))
    console.print(f"metrics written to {result.run_dir / 'metrics.json'}")
    if report:
        with user_errors():
            path = build_report(result.run_dir)
        console.print(f"report written to {path}")
