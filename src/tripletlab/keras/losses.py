"""TF Addons' `TripletSemiHardLoss` and `TripletHardLoss` for Keras 3, written with `keras.ops`.

Same argument names and values as `tensorflow_addons.losses`, with two differences: a batch
without any positive pair gives 0 (TF Addons returned NaN), and memory is O(N^2) (anchors are
processed in blocks instead of TF Addons' (N^2, N) tiling).
"""

from __future__ import annotations

from collections.abc import Callable

import keras
from keras import ops

# Elements of one (anchors, N, N) block of the semi-hard search.
_BLOCK_ELEMENTS = 1 << 22
_DISTANCES = ("L2", "squared-L2", "angular")


def pairwise_distance(feature, squared: bool = False):
    """(N, D) -> (N, N) Euclidean distances exactly as TF Addons computes them."""
    sq = ops.sum(ops.square(feature), axis=1, keepdims=True)
    squared_dist = sq + ops.transpose(sq) - 2.0 * ops.matmul(feature, ops.transpose(feature))
    squared_dist = ops.maximum(squared_dist, 0.0)
    zero = ops.cast(ops.less_equal(squared_dist, 0.0), squared_dist.dtype)
    dist = squared_dist if squared else ops.sqrt(squared_dist + zero * 1e-16)
    dist = dist * (1.0 - zero)
    return dist * (1.0 - ops.eye(ops.shape(feature)[0], dtype=dist.dtype))


def angular_distance(feature):
    """(N, D) -> (N, N) `max(1 - cos, 0)` of the L2-normalized rows, as TF Addons."""
    norm = ops.sqrt(ops.maximum(ops.sum(ops.square(feature), axis=1, keepdims=True), 1e-12))
    unit = feature / norm
    return ops.maximum(1.0 - ops.matmul(unit, ops.transpose(unit)), 0.0)


def _distances(embeddings, distance_metric: str | Callable):
    if callable(distance_metric):
        return distance_metric(embeddings)
    if distance_metric not in _DISTANCES:
        raise ValueError(
            f"unknown distance_metric {distance_metric!r}; expected one of "
            f"{', '.join(_DISTANCES)} or a callable returning the pairwise distance matrix"
        )
    if distance_metric == "angular":
        return angular_distance(embeddings)
    return pairwise_distance(embeddings, squared=distance_metric == "squared-L2")


def _prepare(y_true, y_pred):
    labels = ops.reshape(y_true, (-1,))
    embeddings = ops.convert_to_tensor(y_pred)
    dtype = keras.backend.standardize_dtype(embeddings.dtype)  # "float16", not torch.float16
    low_precision = dtype in ("float16", "bfloat16")
    precise = ops.cast(embeddings, "float32") if low_precision else embeddings
    same = ops.equal(ops.expand_dims(labels, 1), ops.expand_dims(labels, 0))
    return precise, same, dtype


def _semihard_negatives(dist, negative):
    """(N, N) distance to the semi-hard negative of every (anchor, candidate) pair, computed
    for blocks of anchors (O(N^2) memory) when N is known; in a graph traced with an unknown
    batch size (TensorFlow's `fit`), for all anchors at once (O(N^3), as TF Addons)."""
    big = ops.cast(ops.max(dist) + 1.0, dist.dtype)  # stands in for "no candidate"
    static = dist.shape[0]
    if static is None:
        return _semihard_block(dist, negative, big)
    n = int(static)
    step = max(1, _BLOCK_ELEMENTS // max(n * n, 1))
    parts = [_semihard_block(dist[start : start + step], negative[start : start + step], big)
             for start in range(0, n, step)]  # fmt: skip
    return parts[0] if len(parts) == 1 else ops.concatenate(parts, axis=0)


def _semihard_block(rows, neg, big):
    """The semi-hard negatives of a block of anchors: rows (c, N) of distances and their
    negative mask (c, N) -> (c, N)."""
    # (c, p, n): negatives farther from the anchor than candidate p
    farther = ops.logical_and(
        ops.expand_dims(neg, 1), ops.greater(ops.expand_dims(rows, 1), ops.expand_dims(rows, 2))
    )
    outside = ops.min(ops.where(farther, ops.expand_dims(rows, 1), big), axis=2)
    has_outside = ops.any(farther, axis=2)
    inside = ops.max(ops.where(neg, rows, -big), axis=1, keepdims=True)
    no_negative = ops.logical_not(ops.any(neg, axis=1, keepdims=True))
    inside = ops.where(no_negative, ops.min(rows, axis=1, keepdims=True), inside)
    return ops.where(has_outside, outside, inside)


def triplet_semihard_loss(y_true, y_pred, margin: float = 1.0, distance_metric="L2"):
    """TF Addons' semi-hard triplet loss.

    Args:
        y_true: labels (N,) or (N, 1).
        y_pred: embeddings (N, D); float16 / bfloat16 are computed in float32, cast back.
        margin: the margin.
        distance_metric: "L2", "squared-L2", "angular" or a callable (N, D) -> (N, N).
    Returns:
        Scalar loss; 0 for a batch without a positive pair.
    Reference: Schroff et al. 2015, FaceNet, https://arxiv.org/abs/1503.03832
    """
    embeddings, same, dtype = _prepare(y_true, y_pred)
    dist = _distances(embeddings, distance_metric)
    n = ops.shape(dist)[0]
    positive = ops.cast(same, dist.dtype) - ops.eye(n, dtype=dist.dtype)
    negatives = _semihard_negatives(dist, ops.logical_not(same))
    pair_loss = ops.maximum((margin + dist - negatives) * positive, 0.0)
    count = ops.sum(positive)
    loss = ops.sum(pair_loss) / ops.maximum(count, 1.0)
    return ops.cast(loss, dtype)


def triplet_hard_loss(
    y_true, y_pred, margin: float = 1.0, soft: bool = False, distance_metric="L2"
):
    """TF Addons' batch-hard triplet loss (hardest positive and negative per anchor).

    Args:
        y_true: labels (N,) or (N, 1).
        y_pred: embeddings (N, D); float16 / bfloat16 are computed in float32, cast back.
        margin: the margin (unused when `soft`).
        soft: `log1p(exp(hp - hn))` instead of the hinge.
        distance_metric: "L2", "squared-L2", "angular" or a callable (N, D) -> (N, N).
    Returns:
        Scalar loss.
    Reference: Hermans et al. 2017, https://arxiv.org/abs/1703.07737
    """
    embeddings, same, dtype = _prepare(y_true, y_pred)
    dist = _distances(embeddings, distance_metric)
    n = ops.shape(dist)[0]
    positive = ops.logical_and(same, ops.logical_not(ops.cast(ops.eye(n), "bool")))
    negative = ops.logical_not(same)
    big = ops.max(dist) + 1.0
    row_min = ops.min(dist, axis=1)
    row_max = ops.max(dist, axis=1)
    hardest_pos = ops.max(ops.where(positive, dist, -big), axis=1)
    hardest_pos = ops.where(ops.any(positive, axis=1), hardest_pos, row_min)
    hardest_neg = ops.min(ops.where(negative, dist, big), axis=1)
    hardest_neg = ops.where(ops.any(negative, axis=1), hardest_neg, row_max)
    gap = hardest_pos - hardest_neg
    per_anchor = ops.softplus(gap) if soft else ops.maximum(gap + margin, 0.0)
    return ops.cast(ops.mean(per_anchor), dtype)


def _metric_config(distance_metric):
    if isinstance(distance_metric, str):
        return distance_metric
    return keras.saving.serialize_keras_object(distance_metric)


def _metric_from_config(value):
    return value if isinstance(value, str) else keras.saving.deserialize_keras_object(value)


class _TripletLoss(keras.losses.Loss):
    """Restores a `distance_metric` saved as a name or as a serialized callable."""

    def __call__(self, y_true, y_pred, sample_weight=None):
        """Keras casts `y_true` to the loss's float dtype before `call`, which would merge
        labels above 2**24 (hashed identities; 2048 in float16). Each label becomes the index
        of its first occurrence in the batch first: the same pairs, exact in float."""
        labels = ops.reshape(ops.convert_to_tensor(y_true), (-1,))
        same = ops.equal(ops.expand_dims(labels, 1), ops.expand_dims(labels, 0))
        first = ops.argmax(ops.cast(same, "int32"), axis=1)
        return super().__call__(first, y_pred, sample_weight)

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["distance_metric"] = _metric_from_config(config.get("distance_metric", "L2"))
        return cls(**config)


@keras.saving.register_keras_serializable(package="tripletlab")
class TripletSemiHardLoss(_TripletLoss):
    """Keras 3 replacement for `tfa.losses.TripletSemiHardLoss` (see `triplet_semihard_loss`)."""

    def __init__(self, margin: float = 1.0, distance_metric="L2", name=None, **kwargs):
        super().__init__(name=name or "triplet_semihard_loss", **kwargs)
        self.margin = margin
        self.distance_metric = distance_metric

    def call(self, y_true, y_pred):
        return triplet_semihard_loss(y_true, y_pred, self.margin, self.distance_metric)

    def get_config(self):
        return {**super().get_config(), "margin": self.margin,
                "distance_metric": _metric_config(self.distance_metric)}  # fmt: skip


@keras.saving.register_keras_serializable(package="tripletlab")
class TripletHardLoss(_TripletLoss):
    """Keras 3 replacement for `tfa.losses.TripletHardLoss` (see `triplet_hard_loss`)."""

    def __init__(self, margin: float = 1.0, soft: bool = False, distance_metric="L2", name=None,
                 **kwargs):  # fmt: skip
        super().__init__(name=name or "triplet_hard_loss", **kwargs)
        self.margin = margin
        self.soft = soft
        self.distance_metric = distance_metric

    def call(self, y_true, y_pred):
        return triplet_hard_loss(y_true, y_pred, self.margin, self.soft, self.distance_metric)

    def get_config(self):
        return {**super().get_config(), "margin": self.margin, "soft": self.soft,
                "distance_metric": _metric_config(self.distance_metric)}  # fmt: skip
