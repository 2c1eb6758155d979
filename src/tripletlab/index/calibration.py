"""Calibrated matching: the nearest item's label if it is close enough to trust, else unknown.

`calibrate` takes labelled queries that were searched against the gallery (their nearest
item's distance, and whether its label was theirs) and finds, for each target precision, the
largest distance threshold at which the matches it accepts are right at least that often
(TensorFlow Similarity's `calibrate`). A larger threshold answers more queries, so the largest
one that keeps the precision gives the most recall.

Queries of known classes alone never teach a threshold to say "unknown": when the nearest
item is right 99% of the time, every threshold reaches 0.99. Open-set calibration adds, for
each query, the distance to its nearest item of another class ("impostor": what a query of a
class the gallery lacks would find) as a wrong match, so the thresholds also keep such
queries out (measured on MNIST in docs/search.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

DEFAULT_PRECISIONS = (0.90, 0.95, 0.99)
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Threshold:
    """One calibrated threshold: matches with distance <= `distance` (None: the target is not
    reached at any threshold) are right with `precision`; `recall` is the share of the right
    nearest items it keeps, `answered` the share of the queries it answers."""

    target: float
    distance: float | None
    precision: float
    recall: float
    answered: float
    impostors_accepted: float | None = None  # open-set: share of impostor queries answered


def calibrate(
    distances: np.ndarray,
    correct: np.ndarray,
    targets: tuple[float, ...] = DEFAULT_PRECISIONS,
    impostors: np.ndarray | None = None,
) -> list[Threshold]:
    """Distance thresholds reaching the target precisions of the nearest-item match.

    Args:
        distances: (Q,) distance of each query's nearest gallery item.
        correct: (Q,) whether that item's label is the query's.
        targets: precisions in (0, 1].
        impostors: (I,) open-set: distances at which queries of classes the gallery lacks
            find their nearest item; each is a wrong match if accepted. `recall` and
            `answered` stay shares of the Q known-class queries.
    Returns:
        One `Threshold` per target, in the order given.
    Raises:
        ValueError: no queries, shapes that differ, a NaN distance, a target outside (0, 1].
    """
    distances = np.asarray(distances, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    if distances.ndim != 1 or correct.shape != distances.shape or len(distances) == 0:
        raise ValueError(
            f"calibration needs (Q,) distances and (Q,) outcomes, Q >= 1; got "
            f"{distances.shape} and {correct.shape}"
        )
    known = len(distances)
    if impostors is not None:
        impostors = np.asarray(impostors, dtype=np.float64).ravel()
        distances = np.concatenate([distances, impostors])
        correct = np.concatenate([correct, np.zeros(len(impostors), dtype=bool)])
    if np.isnan(distances).any():
        raise ValueError("calibration distances contain NaN")
    for target in targets:
        if not 0 < target <= 1:
            raise ValueError(f"a target precision must be in (0, 1], got {target}")
    order = np.argsort(distances, kind="stable")
    d, right = distances[order], correct[order]
    hits = np.cumsum(right)
    accepted = np.arange(1, len(d) + 1)
    fakes = np.cumsum(order >= known)  # impostors accepted
    answered_known = accepted - fakes
    # A threshold accepts every query at its distance: only the last of equal distances counts.
    ends = np.flatnonzero(np.append(d[1:] > d[:-1], True))
    precision = hits[ends] / accepted[ends]
    total_right = max(int(hits[-1]), 1)
    found = []
    for target in targets:
        # A float's own rounding must not miss a target met exactly (e.g. 19 of 20 for 0.95).
        reached = np.flatnonzero(precision >= target - 1e-12)
        open_share = None if impostors is None else 0.0
        if len(reached) == 0:
            found.append(Threshold(target, None, float(precision.max()), 0.0, 0.0, open_share))
            continue
        end = ends[reached[-1]]
        precision_at, recall_at = hits[end] / accepted[end], hits[end] / total_right
        answered = answered_known[end] / known
        if impostors is not None:
            open_share = float(fakes[end] / max(len(impostors), 1))
        found.append(Threshold(target, float(d[end]), float(precision_at), float(recall_at),
                               float(answered), open_share))  # fmt: skip
    return found


def check_targets(targets: tuple[float, ...]) -> None:
    """Refuse target precisions outside (0, 1] (or none).

    Raises:
        ValueError: naming the first bad one.
    """
    if not targets:
        raise ValueError("give at least one target precision")
    for target in targets:
        if not 0 < target <= 1:
            raise ValueError(f"a target precision must be in (0, 1], got {target}")


@dataclass(frozen=True)
class Calibration:
    """The thresholds of an index, and what they were measured on."""

    thresholds: tuple[Threshold, ...]
    queries: int
    source: str  # e.g. "val part of the run's data"
    open_set: bool = False  # impostors counted (see the module docstring)

    def threshold_for(self, precision: float) -> float:
        """The calibrated distance for a target precision.

        Raises:
            ValueError: the precision was not calibrated, or not reached.
        """
        for threshold in self.thresholds:
            if abs(threshold.target - precision) < 1e-9:
                if threshold.distance is None:
                    raise ValueError(
                        f"precision {precision} was not reached in calibration (best "
                        f"{threshold.precision:.3f}); choose a lower one or give a threshold"
                    )
                return threshold.distance
        have = ", ".join(f"{t.target:g}" for t in self.thresholds)
        raise ValueError(f"precision {precision} was not calibrated; calibrated: {have}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (for the manifest)."""
        return {"queries": self.queries, "source": self.source, "open_set": self.open_set,
                "thresholds": [asdict(t) for t in self.thresholds]}  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        """Inverse of `to_dict`.

        Raises:
            ValueError: not such a mapping.
        """
        try:
            thresholds = tuple(Threshold(**t) for t in data["thresholds"])
            return cls(thresholds, int(data["queries"]), str(data["source"]),
                       bool(data.get("open_set", False)))  # fmt: skip
        except (KeyError, TypeError) as error:
            raise ValueError(f"damaged calibration in the manifest ({error})") from None
