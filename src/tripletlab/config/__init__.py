"""Run configuration: one frozen dataclass per component, defaults in code, then a preset, a
YAML file, flags and `--set section.key=value`; each section checked when it is built, the
rules across sections by `check_config`."""

from tripletlab.config.checks import check_config
from tripletlab.config.kinds import (
    DISTANCES,
    EMBED_BATCH_SIZE,
    IMAGENET_MEAN,
    IMAGENET_STD,
    LOSS_NAMES,
    TRIPLET_RULES,
    Distance,
    Freeze,
    LossName,
    Mode,
    Monitor,
    OptimizerName,
    SamplerName,
    Scaling,
    Schedule,
    TripletRule,
)
from tripletlab.config.merging import (
    combine,
    load_yaml,
    merge,
    parse_assignments,
    upgrade_saved,
)
from tripletlab.config.presets import PRESETS, preset
from tripletlab.config.sections import (
    DataConfig,
    LossConfig,
    ModelConfig,
    PhaseConfig,
    RunConfig,
    TrainConfig,
    plain,
)

__all__ = [
    "DISTANCES",
    "EMBED_BATCH_SIZE",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LOSS_NAMES",
    "PRESETS",
    "TRIPLET_RULES",
    "DataConfig",
    "Distance",
    "Freeze",
    "LossConfig",
    "LossName",
    "Mode",
    "ModelConfig",
    "Monitor",
    "OptimizerName",
    "PhaseConfig",
    "RunConfig",
    "SamplerName",
    "Scaling",
    "Schedule",
    "TrainConfig",
    "TripletRule",
    "check_config",
    "combine",
    "load_yaml",
    "merge",
    "parse_assignments",
    "plain",
    "preset",
    "upgrade_saved",
]
