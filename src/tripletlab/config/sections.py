"""The run configuration: one frozen dataclass per component, checked when built.

The defaults are the TF Addons tutorial's recipe: seed_cnn, semi-hard loss, margin 1.0, L2,
Adam 1e-3, shuffled batches of 32, 5 epochs. Modes are `Literal` types; a bad value is refused
when its section is built, naming the key and the accepted values (`tripletlab.config.fields`),
and so are fields of one section that do not fit together. Rules across sections are
`tripletlab.config.check_config`'s.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from tripletlab.config.fields import above, at_least, check_fields, module_names, within
from tripletlab.config.kinds import (
    EMBED_BATCH_SIZE,
    Distance,
    Freeze,
    LossName,
    Mode,
    Monitor,
    OptimizerName,
    Precision,
    SamplerName,
    Scaling,
    Schedule,
    SplitOrder,
    TripletRule,
)


@dataclass(frozen=True)
class DataConfig:
    """Where the images come from and how much of them to use."""

    SECTION: ClassVar[str] = "data"

    dataset: str = "mnist"  # "mnist", or a folder with one sub-folder per class
    limit: int | None = field(default=None, metadata=at_least(2))  # only N training images
    # Held out of the training images for per-epoch validation.
    val_fraction: float = field(default=0.1, metadata=within(0.0, 1.0))
    # Split specs ("train[:40%]"); folders have one source split, "train". Unset: MNIST holds
    # out val_fraction of its train split; a folder val_fraction of each class for validation
    # and 10% for testing (80/10/10 by default).
    train_split: str | None = None
    val_split: str | None = None
    test_split: str | None = None
    # How split specs cut a source: "per-class" cuts percentages in each class (stratified)
    # when every spec of that source is in percent; "global" slices one shuffled order (what
    # runs saved before 2026-11-30 used; loading them keeps it).
    split_order: SplitOrder = "per-class"
    # Keep only these class ids (e.g. digits 5-9).
    classes: tuple[int, ...] | None = field(default=None, metadata=at_least(0))
    # Keep at most this many training images per class.
    per_class: int | None = field(default=None, metadata=at_least(1))
    # Classes never seen in training ("A Metric Learning Reality Check"): training and
    # validation images only of train_classes, test images only of test_classes (the test
    # metrics, report and plots). One given: the other is every other class.
    train_classes: tuple[int, ...] | None = field(default=None, metadata=at_least(0))
    test_classes: tuple[int, ...] | None = field(default=None, metadata=at_least(0))

    def __post_init__(self) -> None:
        check_fields(self)
        shared = set(self.train_classes or ()) & set(self.test_classes or ())
        if shared:
            raise ValueError(
                f"data.train_classes and data.test_classes share {sorted(shared)}: classes "
                "never seen in training must not be trained on (data.classes keeps a subset "
                "for both)"
            )


@dataclass(frozen=True)
class ModelConfig:
    """The embedding network."""

    SECTION: ClassVar[str] = "model"

    backbone: str = "seed_cnn"
    embedding_dim: int = field(default=256, metadata=at_least(1))  # the linear head's output
    head: bool = True  # False: the backbone's output is the embedding
    normalize: bool = True  # L2-normalize the embedding
    channels: int = field(default=1, metadata=at_least(1))
    image_size: tuple[int, int] = field(default=(28, 28), metadata=at_least(1))
    backbone_weights: str | None = None  # run folder, .safetensors or .pt/.pth to start from
    # Modules imported before the backbone is built: they register custom backbones
    # (`register_backbone`); recorded so that every later command finds them too.
    imports: tuple[str, ...] = field(default=(), metadata=module_names())
    # Augmentation inside the model, in training only.
    flip: bool = False  # random horizontal flip (off for digits)
    rotation: float = field(default=0.0, metadata=within(0.0, 180.0, closed=True))  # degrees
    translate: float = field(default=0.0, metadata=within(0.0, 1.0))  # fraction of the size
    # Test-time views: in eval mode, average the embeddings of the image and of its copies
    # rolled by this many pixels up, down, left and right (pixels leaving one edge come back at
    # the other; on MNIST's empty border that is a shift); 0: the image alone.
    tta_shift: int = field(default=0, metadata=at_least(0))
    # Test-time views: also embed the mirror image (and its shifted copies), in eval mode.
    tta_flip: bool = False
    # Pixels 0..255 become: "unit" [0, 1]; "symmetric" [-1, 1] (Keras' Rescaling(1/127.5,
    # offset=-1)); "mean-std" ([0, 1] - input_mean) / input_std per channel (ImageNet's when
    # unset); "auto": mean-std for the ImageNet backbones, unit otherwise. Inside the model (and
    # its ONNX export), after augmentation.
    input_scaling: Scaling = "auto"
    input_mean: tuple[float, ...] | None = None
    input_std: tuple[float, ...] | None = field(default=None, metadata=above(0.0))
    # Dropout on the backbone's features before the head (the guide's Dropout(0.2)), training only.
    head_dropout: float = field(default=0.0, metadata=within(0.0, 1.0))
    # A classifier on the embedding (losses with cross-entropy): the label of each output, and
    # the class names; set by training from the data. Two classes: one logit (binary).
    classes: tuple[int, ...] = field(default=(), metadata=at_least(0))
    class_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_fields(self)
        if len(self.class_names) != len(self.classes):
            raise ValueError(
                f"model.class_names must name each of model.classes ({len(self.classes)}), "
                f"got {len(self.class_names)}"
            )
        if len(self.classes) == 1:
            raise ValueError("model.classes: a classifier needs at least two classes")
        for key in ("input_mean", "input_std"):
            value = getattr(self, key)
            if value is not None and self.input_scaling in ("unit", "symmetric"):
                raise ValueError(
                    f"model.{key} applies only to model.input_scaling mean-std (or auto), "
                    f"not {self.input_scaling}"
                )
            if value is not None and len(value) != self.channels:
                raise ValueError(
                    f"model.{key} needs one value per channel ({self.channels}), got {list(value)}"
                )
        if self.tta_shift >= min(self.image_size):
            raise ValueError(
                f"model.tta_shift must be smaller than the image ({min(self.image_size)} "
                f"pixels), got {self.tta_shift}"
            )


@dataclass(frozen=True)
class LossConfig:
    """The in-batch triplet loss."""

    SECTION: ClassVar[str] = "loss"

    name: LossName = "semihard"
    margin: float = field(default=1.0, metadata=at_least(0.0))
    distance: Distance = "L2"
    soft: bool = False  # soft-margin form of the "hard" loss
    # The cross-entropy term's weight in the "<triplet>+ce" losses.
    ce_weight: float = field(default=1.0, metadata=at_least(0.0))

    @property
    def triplet(self) -> str | None:
        """The triplet part of the loss ("semihard", "hard", "batch-all"), None for
        cross-entropy alone."""
        return None if self.name == "cross-entropy" else self.name.removesuffix("+ce")

    @property
    def classifies(self) -> bool:
        """Whether the loss trains a classifier (cross-entropy alone or combined)."""
        return self.name == "cross-entropy" or self.name.endswith("+ce")

    def __post_init__(self) -> None:
        check_fields(self)
        if self.ce_weight != 1.0 and not self.name.endswith("+ce"):
            raise ValueError(
                "loss.ce_weight applies only to a triplet loss with cross-entropy "
                f"(semihard+ce, hard+ce, batch-all+ce), not {self.name!r}"
            )
        if self.soft and self.triplet != "hard":
            raise ValueError(f"loss.soft applies only to the hard loss, not {self.name!r}")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and batching."""

    SECTION: ClassVar[str] = "train"

    mode: Mode = "online"  # "online": mine in each batch; "triplets": explicit triplets
    triplets: TripletRule = "random"  # triplet generation of "triplets" mode
    # Regenerate mined triplets every N steps (default: each epoch).
    mine_every: int | None = field(default=None, metadata=at_least(1))
    epochs: int = field(default=5, metadata=at_least(1))
    # Images per batch online, triplets per batch in "triplets" mode.
    batch_size: int = field(default=32, metadata=at_least(2))
    sampler: SamplerName = "shuffle"
    samples_per_class: int = field(default=4, metadata=at_least(2))  # K of PK; P = batch / K
    lr: float = field(default=1e-3, metadata=above(0.0))
    schedule: Schedule = "constant"  # or "cosine" decay to 0 over the run
    seed: int = field(default=0, metadata=within(0, 2**32))  # any generator takes 32 bits
    eval_batch_size: int = field(default=EMBED_BATCH_SIZE, metadata=at_least(1))
    # Decay of an exponential moving average of the weights (e.g. 0.998); the average, not the
    # raw weights, is validated and checkpointed. Step t uses min(ema, (1 + t) / (10 + t)).
    # None: no average.
    ema: float | None = field(default=None, metadata=within(0.0, 1.0))
    # Also write a resumable checkpoint every N training steps (None: at the end of each epoch
    # only), for long epochs: a killed run loses at most N steps.
    checkpoint_every: int | None = field(default=None, metadata=at_least(1))
    # BatchNorm in training mode? None: yes, unless backbone weights were loaded (transfer),
    # where it stays in inference mode. Frozen BatchNorm is always in inference mode.
    bn_train: bool | None = None
    # Stop a phase when `monitor` has not improved for this many of its epochs (None: never).
    patience: int | None = field(default=None, metadata=at_least(1))
    # What picks the best epoch (and early stopping): "auto" is val_map_at_r with validation
    # images (val_accuracy for cross-entropy alone), else the training loss.
    monitor: Monitor = "auto"
    # Phases with a frozen backbone, no augmentation and BatchNorm in inference mode train the
    # head on the backbone's outputs, computed once (the guide's feature extraction).
    feature_cache: bool = True
    # "bfloat16": the backbone's training forward pass under autocast (CPUs with AMX or AVX-512
    # BF16, GPUs); head, loss, weights, optimizer and every evaluation stay float32.
    precision: Precision = "float32"

    def __post_init__(self) -> None:
        check_fields(self)
        if self.sampler == "pk" and self.batch_size < 2 * self.samples_per_class:
            raise ValueError(
                "pk batches need train.batch_size >= 2 * train.samples_per_class (two "
                f"classes); got {self.batch_size} and {self.samples_per_class}"
            )


@dataclass(frozen=True)
class PhaseConfig:
    """One phase of training: the Keras guide's "train the head" or "fine-tune" step.

    The optimizer is rebuilt at the start of each phase, over the parameters then trainable.
    """

    SECTION: ClassVar[str] = "phases[]"

    epochs: int = field(default=1, metadata=at_least(1))
    lr: float = field(default=1e-3, metadata=above(0.0))
    optimizer: OptimizerName = "adam"
    freeze: Freeze = "none"  # "none", "backbone" or "until:<layer>"
    schedule: Schedule = "constant"  # or "cosine": lr decays to 0 over the phase

    def __post_init__(self) -> None:
        check_fields(self)
        layer = self.freeze.removeprefix("until:").strip()
        if self.freeze not in ("none", "backbone") and (
            not self.freeze.startswith("until:") or not layer
        ):
            raise ValueError(
                "phases[].freeze must be one of none, backbone, until:<layer> (a direct child "
                f"of the backbone, e.g. until:layer4); got {self.freeze!r}"
            )
        if self.freeze.startswith("until:"):
            object.__setattr__(self, "freeze", f"until:{layer}")

    @property
    def until(self) -> str | None:
        """The backbone layer from which `freeze: until:<layer>` trains, else None."""
        return self.freeze.removeprefix("until:") if self.freeze.startswith("until:") else None


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs; written to `RUN_DIR/config.yaml` and into every checkpoint."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    # Empty: one phase of `train.epochs` at `train.lr`, nothing frozen.
    phases: tuple[PhaseConfig, ...] = ()

    def resolved_phases(self) -> tuple[PhaseConfig, ...]:
        """The phases to run (one implicit phase when none are configured)."""
        train = self.train
        implicit = PhaseConfig(epochs=train.epochs, lr=train.lr, schedule=train.schedule)
        return self.phases or (implicit,)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (tuples become lists), for JSON and YAML."""
        return plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunConfig:
        """Build from a nested dict, checking section and key names and every value."""
        from tripletlab.config.merging import merge

        return merge(cls(), values)


def plain(value: Any) -> Any:
    """Nested dicts, lists and tuples as dicts and lists (tuples become lists), for JSON/YAML."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value
