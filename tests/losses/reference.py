"""Brute-force NumPy references over all triplets, written from TF Addons' definitions."""

from __future__ import annotations

import numpy as np


def distances(x: np.ndarray, distance: str) -> np.ndarray:
    x = x.astype(np.float64)
    n = len(x)
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if distance == "angular":
                ui = x[i] / np.sqrt(max(np.sum(x[i] ** 2), 1e-12))
                uj = x[j] / np.sqrt(max(np.sum(x[j] ** 2), 1e-12))
                out[i, j] = max(1.0 - ui @ uj, 0.0)
            elif i != j:
                squared = max(np.sum((x[i] - x[j]) ** 2), 0.0)
                out[i, j] = squared if distance == "squared-L2" else np.sqrt(squared)
    return out


def semihard(x: np.ndarray, labels: np.ndarray, margin: float, distance: str) -> float:
    d = distances(x, distance)
    n = len(x)
    losses = []
    for a in range(n):
        negatives = [k for k in range(n) if labels[k] != labels[a]]
        for p in range(n):
            if p == a or labels[p] != labels[a]:
                continue
            farther = [d[a, k] for k in negatives if d[a, k] > d[a, p]]
            if farther:
                neg = min(farther)
            elif negatives:
                neg = max(d[a, k] for k in negatives)
            else:
                neg = d[a].min()
            losses.append(max(d[a, p] - neg + margin, 0.0))
    return float(np.mean(losses)) if losses else 0.0


def hard(x: np.ndarray, labels: np.ndarray, margin: float, distance: str, soft: bool) -> float:
    d = distances(x, distance)
    n = len(x)
    losses = []
    for a in range(n):
        pos = [d[a, k] for k in range(n) if k != a and labels[k] == labels[a]]
        neg = [d[a, k] for k in range(n) if labels[k] != labels[a]]
        hardest_pos = max(pos) if pos else d[a].min()
        hardest_neg = min(neg) if neg else d[a].max()
        gap = hardest_pos - hardest_neg
        losses.append(np.log1p(np.exp(gap)) if soft else max(gap + margin, 0.0))
    return float(np.mean(losses))


def batch_all(x: np.ndarray, labels: np.ndarray, margin: float, distance: str) -> float:
    d = distances(x, distance)
    n = len(x)
    positive_losses = []
    for a in range(n):
        for p in range(n):
            if p == a or labels[p] != labels[a]:
                continue
            for k in range(n):
                if labels[k] != labels[a]:
                    loss = d[a, p] - d[a, k] + margin
                    if loss > 0:
                        positive_losses.append(loss)
    return float(np.mean(positive_losses)) if positive_losses else 0.0
