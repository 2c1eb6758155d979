"""Similarity search through `tripletlab.index` (FAISS), against references measured in the
same run; prints ratios (the machine's speed swings, ratios hold).

1. exact: 60,000 x 256 trained-like embeddings, 10,000 queries, k = 10: `EmbeddingIndex.search`
   against the raw FAISS index it wraps (goal: within 10%) and NumPy brute force, matmul +
   argpartition in blocks (goal: at least 5x faster). A and B alternate.
2. hnsw: 1,000,000 x 128 clustered vectors: recall@10 against exact search (goal >= 0.95) at
   queries per second against exact's (goal >= 10x); build time and resident memory.
3. ivf-pq: 10,000,000 x 64 vectors, made and added in chunks, saved, then loaded and searched
   in a fresh process: its peak resident memory (goal < 2 GB), recall@10 against exact
   search.
4. mining: offline semi-hard mining of an epoch's triplets on 54,000 x 128 (the explicit-
   triplet recipe's ReLU embeddings, synthetic) against the exact all-pairs search tripletlab
   used before (kept here as the reference), goal at least 4x faster, same triplets.
5. retrieval: the retrieval metrics' top-k path through the index against the compiled engine
   on small sets, which sets where the short path is taken (`evaluation/_topk.py`).

Run: `make bench`, or `python benchmarks/index.py [--part NAME] [--quick]` (--quick: sizes cut
by 10 or more, to check the script in a minute).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import numpy as np
import torch
from _common import console, show

from tripletlab.data.triplets import mined_negatives, random_positives
from tripletlab.evaluation import retrieval_metrics
from tripletlab.index import EmbeddingIndex, IndexSettings
from tripletlab.index._faiss import faiss


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def trained_like(
    n: int, dim: int, seed: int, classes: int = 10, rank: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """Classes on a low-dimensional subspace plus a little noise, L2-normalized (as a trained
    model's embeddings), and their labels."""
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(rank, dim))
    centres = rng.normal(size=(classes, rank)) * 2
    labels = rng.integers(0, classes, n)
    x = (centres[labels] + rng.normal(size=(n, rank))) @ basis + 0.3 * rng.normal(size=(n, dim))
    return _unit(x), labels


def numpy_knn(items: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """(Q, k) ids of the k largest inner products: matmul and argpartition, 1,024 rows at a
    time, then the k sorted."""
    out = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), 1024):
        scores = queries[start : start + 1024] @ items.T
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, 1), axis=1)
        out[start : start + 1024] = np.take_along_axis(top, order, 1)
    return out


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Share of the true k nearest found, averaged over queries."""
    return float(
        np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(found, truth, strict=True)])
    )


def exact_part(quick: bool) -> None:
    n, q = (6000, 1000) if quick else (60000, 10000)
    items, queries = trained_like(n, 256, 0)[0], trained_like(q, 256, 1)[0]
    index = EmbeddingIndex(256, "L2", normalized=True)
    index.add(items, np.zeros(n, dtype=np.int64))
    raw = index._index  # the FAISS index it wraps
    runs = {"EmbeddingIndex.search": [], "raw FAISS index.search": [], "NumPy brute force": []}
    for _ in range(5):  # alternate A / B / C (best of 5: the machine swings)
        for name, call in (("EmbeddingIndex.search", lambda: index.search(queries, 10)),
                           ("raw FAISS index.search", lambda: raw.search(queries, 10)),
                           ("NumPy brute force",
                            lambda: numpy_knn(items, queries, 10))):  # fmt: skip
            start = time.perf_counter()
            call()
            runs[name].append(time.perf_counter() - start)
    best = {name: min(times) for name, times in runs.items()}
    start = time.perf_counter()
    for first in range(0, q, 1024):  # NumPy's share that is the product alone
        queries[first : first + 1024] @ items.T
    product = time.perf_counter() - start
    flops = 2 * n * q * 256
    ours = best["EmbeddingIndex.search"]
    agree = recall(index.search(queries[:500], 10)[1], numpy_knn(items, queries[:500], 10))
    show(f"exact search: {n:,} x 256 gallery, {q:,} queries, k = 10 (best of 5, alternating)",
         ["method", "seconds", "queries / s", "time / EmbeddingIndex"],
         [[name, t, q / t, t / ours] for name, t in best.items()])  # fmt: skip
    raw_ratio, numpy_ratio = ours / best["raw FAISS index.search"], best["NumPy brute force"] / ours
    console.print(f"EmbeddingIndex over raw FAISS: {raw_ratio:.3f}x (goal <= 1.10); NumPy / "
                  f"EmbeddingIndex: {numpy_ratio:.2f}x (goal >= 5); same neighbours as NumPy: "
                  f"{agree:.4f}")  # fmt: skip
    console.print(f"FAISS computes {flops / best['raw FAISS index.search'] / 1e9:.0f} GFLOP/s; "
                  f"NumPy's matmul alone takes {product:.2f} s of its "
                  f"{best['NumPy brute force']:.2f} s, the rest is argpartition")  # fmt: skip


def clustered(n: int, dim: int, seed: int, chunk: int = 200_000) -> np.ndarray:
    """Vectors around 1,000 centres with 16-d spread, normalized, made in chunks."""
    rng = np.random.default_rng(seed)
    basis = np.random.default_rng(99).normal(size=(16, dim)) / 4
    centres = np.random.default_rng(98).normal(size=(1000, dim))
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        x = centres[rng.integers(0, 1000, m)] + rng.normal(size=(m, 16)) @ basis
        out[start : start + m] = _unit(x + 0.05 * rng.normal(size=(m, dim)))
    return out


def _memory_gb(field: str = "VmRSS") -> float:
    """The process's resident memory now (VmRSS) or at its peak (VmHWM), in GiB."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith(field + ":"))
    return int(line.split()[1]) / 1024**2


def hnsw_part(quick: bool) -> None:
    n, q = (100_000, 1000) if quick else (1_000_000, 1000)
    items, queries = clustered(n, 128, 0), clustered(q, 128, 1)
    exact = EmbeddingIndex(128, "L2", normalized=True)
    exact.add(items, np.zeros(n, dtype=np.int64))
    start = time.perf_counter()
    _, truth = exact.search(queries, 10)
    exact_seconds = time.perf_counter() - start
    del exact
    before = _memory_gb()
    start = time.perf_counter()
    graph = EmbeddingIndex(128, "L2", True, IndexSettings("hnsw", hnsw_m=32, ef_construction=40))
    for first in range(0, n, 100_000):
        graph.add(items[first : first + 100_000], np.zeros(min(100_000, n - first), dtype=np.int64))
    build = time.perf_counter() - start
    rows = [["exact", exact_seconds, q / exact_seconds, 1.0, 1.0]]
    for ef in (16, 32, 64, 128):
        graph.set_search(ef_search=ef)
        graph.search(queries[:100], 10)  # warm
        start = time.perf_counter()
        _, found = graph.search(queries, 10)
        seconds = time.perf_counter() - start
        rows.append([f"hnsw efSearch {ef}", seconds, q / seconds, exact_seconds / seconds,
                     recall(found, truth)])  # fmt: skip
    show(f"HNSW (M 32, efConstruction 40): {n:,} x 128 clustered, {q:,} queries, k = 10",
         ["method", "seconds", "queries / s", "speed / exact", "recall@10"], rows)  # fmt: skip
    vectors = n * 128 * 4 / 1024**3
    console.print(f"build {build:.0f} s; the graph index takes {_memory_gb() - before:.2f} GB "
                  f"of resident memory (its float32 vectors {vectors:.2f} GB of that). Goal: "
                  "recall@10 >= 0.95 at >= 10x exact's queries per second")  # fmt: skip


_SEARCH_CHILD = """
import sys, time
import numpy as np
from tripletlab.index import EmbeddingIndex

def rss(field):
    with open("/proc/self/status") as status:
        return int(next(l for l in status if l.startswith(field + ":")).split()[1]) / 1024**2

imported = rss("VmRSS")
index = EmbeddingIndex.load(sys.argv[1])
loaded = rss("VmRSS")
queries, truth = np.load(sys.argv[2]), np.load(sys.argv[3])
for nprobe in (16, 32, 64):
    index.set_search(nprobe=nprobe)
    index.search(queries[:20], 10)  # warm
    start = time.perf_counter()
    _, found = index.search(queries, 10)
    seconds = time.perf_counter() - start
    hit = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth)])
    print(f"ROW {nprobe} {len(queries) / seconds:.0f} {hit:.4f}")
print(f"MEM {imported:.3f} {loaded:.3f} {rss('VmHWM'):.3f} {len(index)}")
"""


def ivfpq_part(quick: bool) -> None:
    """Build in chunks (never the whole gallery in memory), save, then load and search the
    index in a fresh process that imports only tripletlab.index: its peak resident memory is
    what searching the gallery takes."""
    import tempfile
    from pathlib import Path

    n, chunk, dim = (1_000_000 if quick else 10_000_000), 250_000, 64
    settings = IndexSettings("ivf-pq", nlist=1024 if quick else 4096, pq_m=32)
    index = EmbeddingIndex(dim, "L2", True, settings)
    start = time.perf_counter()
    index.train(clustered(39 * settings.nlist, dim, 7), gallery_size=n)
    train_seconds = time.perf_counter() - start
    queries = clustered(200, dim, 1)
    best = np.full((len(queries), 10), -np.inf, dtype=np.float32)
    best_ids = np.zeros((len(queries), 10), dtype=np.int64)
    for first in range(0, n, chunk):  # made, added and searched exactly chunk by chunk
        x = clustered(chunk, dim, 1000 + first // chunk)
        index.add(x, np.zeros(chunk, dtype=np.int64))
        scores = queries @ x.T  # (200, chunk)
        top = np.argpartition(-scores, 10, axis=1)[:, :10]
        merged = np.concatenate([best, np.take_along_axis(scores, top, 1)], 1)
        ids = np.concatenate([best_ids, first + top], 1)
        keep = np.argsort(-merged, axis=1)[:, :10]
        best, best_ids = np.take_along_axis(merged, keep, 1), np.take_along_axis(ids, keep, 1)
        del x, scores
    build = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as folder:
        index.save(Path(folder) / "ix")
        size = sum(p.stat().st_size for p in (Path(folder) / "ix").iterdir()) / 1024**3
        del index
        np.save(Path(folder) / "q.npy", queries)
        np.save(Path(folder) / "t.npy", best_ids)
        child = subprocess.run([sys.executable, "-c", _SEARCH_CHILD, str(Path(folder) / "ix"),
                                str(Path(folder) / "q.npy"), str(Path(folder) / "t.npy")],
                               capture_output=True, text=True, check=True)  # fmt: skip
    lines = [line.split() for line in child.stdout.splitlines()]
    rows = [[int(r[1]), float(r[2]), float(r[3])] for r in lines if r[0] == "ROW"]
    imported, loaded, peak, count = next(r[1:] for r in lines if r[0] == "MEM")
    show(f"IVF-PQ: {int(count):,} x {dim}, nlist {settings.nlist}, 32 bytes a vector, k = 10 "
         "(searched in a fresh process)", ["nprobe", "queries / s", "recall@10"], rows)  # fmt: skip
    console.print(f"training {train_seconds:.0f} s, build {build:.0f} s, index folder "
                  f"{size:.2f} GB; the searching process: {float(imported):.2f} GB after its "
                  f"imports, {float(loaded):.2f} GB with the index loaded, peak "
                  f"{float(peak):.2f} GB (goal < 2 GB; float32 vectors alone would take "
                  f"{n * dim * 4 / 1024**3:.2f} GB)")  # fmt: skip


def all_pairs_mining(embeddings, labels, anchors, positives):
    """tripletlab's semi-hard mining before the index (commit 4de64a3): every anchor against
    every image, in blocks of anchors, by torch."""
    x = torch.as_tensor(np.asarray(embeddings, dtype=np.float32))
    y = torch.as_tensor(labels)
    sq = x.square().sum(1)
    chosen = np.empty(len(anchors), dtype=np.int64)
    step = max(1, (1 << 24) // max(len(x), 1))
    for start in range(0, len(anchors), step):
        a = torch.as_tensor(anchors[start : start + step])
        p = torch.as_tensor(positives[start : start + step])
        dist = torch.addmm(sq[None, :], x[a], x.T, alpha=-2.0).add_(sq[a, None])
        negative = y[None, :] != y[a, None]
        positive_dist = dist.gather(1, p[:, None])
        farther = negative & (dist > positive_dist)
        semihard = dist.masked_fill(~farther, torch.inf).argmin(1)
        farthest = dist.masked_fill(~negative, -torch.inf).argmax(1)
        chosen[start : start + len(a)] = torch.where(farther.any(1), semihard, farthest).numpy()
    return chosen


def mining_part(quick: bool) -> None:
    n = 5400 if quick else 54000
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, n)
    centres = rng.normal(size=(10, 128))
    trained = np.maximum(centres[labels] + 0.6 * rng.normal(size=(n, 128)), 0)
    untrained = _unit(rng.normal(size=(n, 128)))  # an epoch's start: positives lie deep
    anchors = rng.permutation(n)
    positives = random_positives(labels, anchors, np.random.default_rng(1))
    rows = []
    for kind, x in (("trained-like", trained.astype(np.float32)), ("untrained", untrained)):
        times = {"index (FAISS)": [], "all pairs (before)": []}
        results = {}
        for _ in range(2):
            for name, call in (("index (FAISS)", lambda x=x: mined_negatives(
                                    x, labels, anchors, positives, "semihard")),
                               ("all pairs (before)", lambda x=x: all_pairs_mining(
                                    x, labels, anchors, positives))):  # fmt: skip
                start = time.perf_counter()
                results[name] = call()
                times[name].append(time.perf_counter() - start)
        ours, before = min(times["index (FAISS)"]), min(times["all pairs (before)"])
        same = float((results["index (FAISS)"] == results["all pairs (before)"]).mean())
        rows.append([kind, ours, before, before / ours, same])
    show(f"offline semi-hard mining, one epoch: {n:,} x 128 (best of 2, alternating)",
         ["embeddings", "index s", "all pairs s", "speed-up (goal >= 4)", "same negatives"],
         rows)  # fmt: skip


def retrieval_part(quick: bool) -> None:
    rows = []
    shapes = [(2000, 10), (5000, 100), (5000, 20), (10000, 100), (10000, 10), (20000, 100)]
    for n, classes in shapes[:3] if quick else shapes:
        x, y = trained_like(n, 256, 5, classes=classes, rank=16)
        retrieval_metrics(x[:500], y[:500], "engine")  # compiled kernels loaded
        times = {"engine": [], "topk": []}
        for _ in range(2):
            for method in times:
                start = time.perf_counter()
                metrics = retrieval_metrics(x, y, method)
                times[method].append(time.perf_counter() - start)
        largest = int(np.bincount(y).max())
        rows.append([f"{n:,}", classes, largest, min(times["engine"]), min(times["topk"]),
                     min(times["engine"]) / min(times["topk"]), metrics["map_at_r"]])  # fmt: skip
    show("retrieval metrics: top-k path through the index against the compiled engine",
         ["items", "classes", "largest class", "engine s", "top-k s", "engine / top-k",
          "MAP@R"], rows)  # fmt: skip


PARTS = {"exact": exact_part, "hnsw": hnsw_part, "ivf-pq": ivfpq_part, "mining": mining_part,
         "retrieval": retrieval_part}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=[*PARTS, "all"], default="all")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    console.print(f"FAISS {faiss().__version__}, {faiss().omp_get_max_threads()} threads")
    for name, part in PARTS.items():
        if args.part in (name, "all"):
            part(args.quick)


if __name__ == "__main__":
    main()
