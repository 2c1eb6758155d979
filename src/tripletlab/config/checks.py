"""Rules across the sections of a run config, and rules added after runs were saved with
settings they refuse (checked before training, not when a saved run is loaded). Each section
checked its own fields when it was built (`tripletlab.config.sections`); these are checked on
the final config, after every layer (preset, YAML, flags) was applied."""

from __future__ import annotations

from tripletlab.config.sections import RunConfig


def check_config(config: RunConfig) -> None:
    """Refuse a config whose sections do not fit together, before any data is read.

    Raises:
        ValueError: naming the settings and what is accepted.
    """
    train = config.train
    _check_explicit_triplets(config)
    if config.phases:
        default = type(train)()
        ignored = [key for key in ("epochs", "lr", "schedule")
                   if getattr(train, key) != getattr(default, key)]  # fmt: skip
        if ignored:
            raise ValueError(
                f"train.{ignored[0]} applies only without phases, and this config has "
                f"{len(config.phases)} (a preset such as transfer sets them): set the phases' "
                "own epochs, lr and schedule, e.g. --set 'phases=[{epochs: 1, freeze: backbone}, "
                "{epochs: 1, lr: 1.0e-5}]'"
            )
    if not config.model.head and not config.loss.classifies:
        frozen = [i for i, phase in enumerate(config.phases, 1) if phase.freeze == "backbone"]
        if frozen:
            raise ValueError(
                f"phases[{frozen[0]}] freezes the backbone, and without a head (model.head "
                "false) or a classifier (--loss cross-entropy) nothing would be left to train"
            )
    if config.model.classes and not config.loss.classifies:
        raise ValueError(
            f"model.classes is set (a classifier's outputs) but loss {config.loss.name} trains "
            "no classifier: use --loss cross-entropy or <triplet>+ce, or --set model.classes=[] "
            "--set model.class_names=[]"
        )
    if train.monitor == "val_accuracy" and not config.loss.classifies:
        raise ValueError(
            "train.monitor val_accuracy needs a classifier: --loss cross-entropy or semihard+ce"
        )
    no_val = config.data.val_fraction == 0 and config.data.val_split is None
    if no_val and train.monitor.startswith("val_"):
        raise ValueError(
            f"train.monitor {train.monitor} needs validation images; data.val_fraction is 0"
        )


def _check_explicit_triplets(config: RunConfig) -> None:
    """Refuse settings that explicit triplets (or online mining) would silently ignore. Checked
    here, not when the section is built, so that runs saved before these rules still load."""
    train, loss = config.train, config.loss
    if train.mode == "triplets" and (loss.name != "semihard" or loss.soft):
        raise ValueError(
            f"loss.name {loss.name!r}{' with loss.soft' if loss.soft else ''} applies only in "
            "online mode: explicit triplets (train.mode triplets, e.g. --preset spike) train "
            "with the margin loss; loss.margin and loss.distance apply to it"
        )
    if train.mode == "triplets" and train.sampler != "shuffle":
        raise ValueError(
            "train.sampler applies only in online mode: explicit triplets (train.mode "
            "triplets) make their own batches"
        )
    if train.mode == "online" and train.triplets != "random":
        raise ValueError("train.triplets applies only with train.mode triplets")
    if train.mine_every is not None and (train.mode != "triplets" or train.triplets == "random"):
        raise ValueError(
            "train.mine_every applies only to mined explicit triplets (train.mode triplets, "
            "train.triplets semihard or hard)"
        )
