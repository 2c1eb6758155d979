"""`tripletlab train`: train, evaluate on the test set, write the run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from tripletlab.cli.common import console, err_console, metrics_table, user_errors
from tripletlab.cli.launch import torchrun_train
from tripletlab.config import (
    PRESETS,
    RunConfig,
    check_config,
    combine,
    load_yaml,
    merge,
    parse_assignments,
    preset,
)
from tripletlab.data import TITLES, check_run_data
from tripletlab.evaluation import format_per_class
from tripletlab.models import check_backbone
from tripletlab.models.weights import check_backbone_weights
from tripletlab.runs import RunDir
from tripletlab.training import RunResult, resume_run, train_run
from tripletlab.viz import AugmentGridCallback, SamplesCallback, build_report

# Each flag sets the config key of its name; `--loss` sets loss.name. Every other key is
# reached with --set section.key=value.
_FLAG_KEYS = {
    "data": ("dataset", "limit", "val_fraction", "train_classes", "test_classes"),
    "model": ("backbone", "embedding_dim", "image_size", "channels", "backbone_weights",
              "input_scaling", "head_dropout"),
    "loss": ("name", "margin", "distance", "ce_weight"),
    "train": ("mode", "triplets", "epochs", "batch_size", "sampler", "samples_per_class", "lr",
              "schedule", "seed", "checkpoint_every", "patience", "monitor"),
}  # fmt: skip


def resolve_config(
    preset_name: str | None,
    config_file: Path | None,
    flags: dict[str, dict[str, Any]],
    assignments: list[str],
    imports: list[str],
) -> RunConfig:
    """Defaults, then the preset, the YAML file, the flags and `--set`, applied together and
    checked; `imports` (the modules of `tripletlab --import`) are recorded in `model.imports`.
    Flags left unset (None) do not count.

    Raises:
        ValueError: a key given both as a flag and with --set, or any invalid setting.
    """
    layers = [
        preset(preset_name) if preset_name is not None else None,
        load_yaml(config_file) if config_file is not None else None,
    ]
    flags = {section: {key: value for key, value in values.items() if value is not None}
             for section, values in flags.items()}  # fmt: skip
    overrides = parse_assignments(assignments)
    for section, values in overrides.items():
        given = flags.get(section, {})
        twice = [key for key in values if key in given] if isinstance(values, dict) else []
        if twice:
            raise ValueError(f"{section}.{twice[0]} is given both as a flag and with --set")
    resolved = merge(RunConfig(), combine(*layers, flags, overrides))
    if imports:  # recorded with the ones of the preset, YAML file and --set
        recorded = list(dict.fromkeys([*resolved.model.imports, *imports]))
        resolved = merge(resolved, {"model": {"imports": recorded}})
    check_config(resolved)
    check_run_data(resolved)
    check_backbone(resolved.model.backbone, resolved.model.imports)
    return resolved


def train(
    ctx: typer.Context,
    preset_name: Annotated[
        str | None,
        typer.Option("--preset", help=f"Named recipe under the flags: {', '.join(PRESETS)}."),
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="YAML run config; flags override it.")
    ] = None,
    assignments: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Any config key: section.key=value (repeatable), e.g. "
            "model.flip=true; --dry-run lists every key.",
        ),
    ] = None,
    dataset: Annotated[
        str | None, typer.Option(help="mnist, fashion-mnist, or a folder of class folders.")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Use only N training images.")] = None,
    val_fraction: Annotated[float | None, typer.Option(help="Share held out [0.1].")] = None,
    train_classes: Annotated[
        str | None,
        typer.Option(help="Train (and validate) only on these classes, e.g. 0-4 or 0,2,4."),
    ] = None,
    test_classes: Annotated[
        str | None,
        typer.Option(help="Test only on these classes (e.g. 5-9): classes never seen."),
    ] = None,
    backbone: Annotated[
        str | None, typer.Option(help="seed_cnn, spike_cnn, resnet_small...")
    ] = None,
    embedding_dim: Annotated[int | None, typer.Option(help="Embedding size D [256].")] = None,
    image_size: Annotated[int | None, typer.Option(help="Resize images to N x N [28].")] = None,
    channels: Annotated[int | None, typer.Option(help="1 (grey) or 3 (RGB) [1].")] = None,
    backbone_weights: Annotated[
        str | None, typer.Option(help="Start the backbone from a run, .safetensors or .pt.")
    ] = None,
    input_scaling: Annotated[
        str | None, typer.Option(help="Pixels to [0, 1] unit, [-1, 1] symmetric, mean-std, auto.")
    ] = None,
    head_dropout: Annotated[
        float | None, typer.Option(help="Dropout before the head in training [0.0].")
    ] = None,
    loss: Annotated[
        str | None,
        typer.Option(help="semihard, hard, batch-all, cross-entropy, or semihard+ce (...+ce)."),
    ] = None,
    ce_weight: Annotated[
        float | None, typer.Option(help="Cross-entropy's weight in <triplet>+ce [1.0].")
    ] = None,
    margin: Annotated[float | None, typer.Option(help="Triplet margin [1.0].")] = None,
    distance: Annotated[str | None, typer.Option(help="L2, squared-L2 or angular.")] = None,
    mode: Annotated[str | None, typer.Option(help="online or triplets (explicit).")] = None,
    triplets: Annotated[str | None, typer.Option(help="random, semihard or hard.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Training epochs [5].")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Images per batch [32].")] = None,
    sampler: Annotated[str | None, typer.Option(help="shuffle or pk.")] = None,
    samples_per_class: Annotated[int | None, typer.Option(help="K of pk batches [4].")] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate [0.001].")] = None,
    schedule: Annotated[str | None, typer.Option(help="constant or cosine.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed [0].")] = None,
    checkpoint_every: Annotated[
        int | None, typer.Option(help="Also save a resumable checkpoint every N steps.")
    ] = None,
    patience: Annotated[
        int | None, typer.Option(help="Stop a phase after N epochs without improvement.")
    ] = None,
    monitor: Annotated[
        str | None,
        typer.Option(help="What picks the best epoch: auto, val_map_at_r, val_loss, ..."),
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(help="Go on with this stopped or killed run, from its last checkpoint."),
    ] = None,
    run_dir: Annotated[
        Path | None, typer.Option(help="Run folder (default: a new one under runs/).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the resolved config (YAML) and exit.")
    ] = False,
    report: Annotated[bool, typer.Option(help="Write report.md and its plots at the end.")] = True,
    nproc: Annotated[
        int | None,
        typer.Option(help="Train with N processes on this machine (torchrun; global batch)."),
    ] = None,
) -> None:
    """Train an embedding network with a triplet loss; evaluate it on the test set.

    Defaults are the TF Addons tutorial's recipe: seed_cnn, semi-hard, margin 1.0, L2, Adam 1e-3, shuffled batches of 32, 5 epochs. Settings apply in this order: defaults, --preset, --config, flags, --set. A custom backbone: tripletlab --import MODULE train --backbone NAME. Several processes: --nproc N, or torchrun --nproc-per-node N -m tripletlab train ... (--batch-size is the global batch).
    """  # noqa: E501
    values = locals()  # the parameters, by name: the flags
    with user_errors():
        for name in ("train_classes", "test_classes"):
            values[name] = parse_classes(values[name], f"--{name.replace('_', '-')}")
        if nproc is not None and nproc < 1:
            raise ValueError(f"--nproc must be at least 1, got {nproc}")
    flags = {section: {key: values["loss" if key == "name" else key] for key in keys}
             for section, keys in _FLAG_KEYS.items()}  # fmt: skip
    with user_errors():
        if resume is not None:
            given = [name for name in values if name not in ("ctx", "resume", "report", "nproc")
                     and _from_command_line(ctx, name)]  # fmt: skip
            if given:
                flag = {"preset_name": "preset", "assignments": "set"}.get(given[0], given[0])
                raise ValueError(
                    f"--resume goes on with the run's own config; drop --{flag.replace('_', '-')}"
                )
            if nproc is not None and nproc > 1:
                imports = (ctx.obj or {}).get("imports", [])
                raise typer.Exit(torchrun_train(nproc, imports, resume=resume, report=report))
            result = resume_run(resume, console=err_console)
            if result is not None:  # None: a rank but 0 of a distributed run
                _summarise(result, RunDir(result.run_dir).config, report)
            return
        imports = (ctx.obj or {}).get("imports", [])
        resolved = resolve_config(preset_name, config, flags, assignments or [], imports)
        if dry_run:  # the settings, not the files they name
            typer.echo(yaml.safe_dump(resolved.to_dict(), sort_keys=False), nl=False)
            return
        if resolved.model.backbone_weights:  # before torchrun starts (train_run checks too)
            check_backbone_weights(resolved.model.backbone_weights)
        if nproc is not None and nproc > 1:
            code = torchrun_train(nproc, imports, config=resolved, run_dir=run_dir, report=report)
            raise typer.Exit(code)
        result = train_run(resolved, run_dir, console=err_console,
                           callbacks=[AugmentGridCallback(), SamplesCallback()])  # fmt: skip
    if result is not None:
        _summarise(result, resolved, report)


MAX_CLASS_IDS = 1_000_000


def parse_classes(text: str | None, flag: str) -> list[int] | None:
    """Class ids written as `0-4`, `0,2,4` or `0-2,7` (None stays None).

    Raises:
        ValueError: anything else, naming the flag.
    """
    if text is None:
        return None
    classes: list[int] = []
    for part in text.replace(" ", "").split(","):
        low, dash, high = part.partition("-")
        try:
            first, last = int(low), int(high if dash else low)
        except ValueError:
            raise ValueError(f"{flag} takes class ids like 0-4 or 0,2,4; got {text!r}") from None
        if last < first:
            raise ValueError(f"{flag}: {part} is an empty range (write {last}-{first})")
        if len(classes) + last - first >= MAX_CLASS_IDS:  # a typo, not a data set's classes
            raise ValueError(f"{flag}: {text!r} names over {MAX_CLASS_IDS:,} class ids")
        classes += range(first, last + 1)
    return classes


def _from_command_line(ctx: typer.Context, name: str) -> bool:
    """Whether the option `name` was given on the command line (a 0 given counts too)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"


def _summarise(result: RunResult, config: RunConfig, report: bool) -> None:
    """Print the per-class blocks and the metrics table; write the report if asked."""
    metrics = result.metrics
    console.print(format_per_class(metrics["per_class"]), highlight=False)
    name = TITLES.get(config.data.dataset, config.data.dataset)
    console.print(metrics_table(metrics, f"{name} test set ({metrics['num_test']:,} images)"))
    console.print(f"metrics written to {RunDir(result.run_dir).metrics_file}")
    if report:
        with user_errors():
            path = build_report(result.run_dir)
        console.print(f"report written to {path}")
