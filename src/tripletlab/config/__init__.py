"""Run configuration: one frozen dataclass per component, defaults in code, then a preset, a
YAML file, flags and `--set section.key=value`; each field checked when its section is built,
the rules between fields by `check_config`."""

from tripletlab.config.checks import check_config
from tripletlab.config.merging import load_yaml, merge, parse_assignments
from tripletlab.config.presets import PRESETS, preset
from tripletlab.config.sections import (
    DATASET_NAMES,
    DISTANCES,
    EMBED_BATCH_SIZE,
    LOSS_NAMES,
    TRIPLET_RULES,
    DataConfig,
    Distance,
    Freeze,
    LossConfig,
    LossName,
    Mode,
    ModelConfig,
    OptimizerName,
    PhaseConfig,
    RunConfig,
    SamplerName,
    Schedule,
    TrainConfig,
    TripletRule,
    plain,
)

__all__ = [
    "DATASET_NAMES",
    "DISTANCES",
    "EMBED_BATCH_SIZE",
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
    "OptimizerName",
    "PhaseConfig",
    "RunConfig",
    "SamplerName",
    "Schedule",
    "TrainConfig",
    "TripletRule",
    "check_config",
    "load_yaml",
    "merge",
    "parse_assignments",
    "plain",
    "preset",
]
