"""The three kinds of index and their FAISS structures (see `embedding_index`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Literal, get_args

from tripletlab.index._faiss import faiss

IndexKind = Literal["exact", "hnsw", "ivf-pq"]
KINDS: tuple[str, ...] = get_args(IndexKind)


@dataclass(frozen=True)
class IndexSettings:
    """How the index is built and searched (see the module docstring). `nlist` and `pq_m`
    default from the gallery size and the dimension when the index is trained."""

    kind: IndexKind = "exact"
    hnsw_m: int = 32
    ef_construction: int = 40
    ef_search: int = 128
    nlist: int | None = None
    pq_m: int | None = None
    nbits: int = 8
    nprobe: int = 16

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(
                f"unknown index kind {self.kind!r}; expected one of {', '.join(KINDS)}"
            )
        for name in ("hnsw_m", "ef_construction", "ef_search", "nbits", "nprobe"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"index setting {name} must be a whole number >= 1")
        for name in ("nlist", "pq_m"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"index setting {name} must be a whole number >= 1")


def default_nlist(count: int) -> int:
    """IVF lists for a gallery of `count`: the power of two nearest 4 sqrt(count) (FAISS's
    guideline: 4 to 16 sqrt(n)), at least 1, at most 65,536."""
    return int(min(65536, 2 ** round(math.log2(max(1.0, 4 * math.sqrt(max(count, 1)))))))


def default_pq_m(dim: int) -> int:
    """PQ sub-quantizers: the largest divisor of `dim` up to dim / 4 (4 dimensions a byte)."""
    return max(m for m in range(1, max(1, dim // 4) + 1) if dim % m == 0)


def make_faiss_index(settings: IndexSettings, dim: int, inner_product: bool) -> Any:
    """An empty FAISS index (`faiss.Index`) of the kind (`nlist` and `pq_m` resolved for
    IVF-PQ), with ids."""
    f, s, d = faiss(), settings, dim
    metric = f.METRIC_INNER_PRODUCT if inner_product else f.METRIC_L2
    if s.kind == "exact":
        return f.IndexIDMap2(f.IndexFlatIP(d) if inner_product else f.IndexFlatL2(d))
    if s.kind == "hnsw":
        graph = f.IndexHNSWFlat(d, s.hnsw_m, metric)
        graph.hnsw.efConstruction = s.ef_construction
        graph.hnsw.efSearch = s.ef_search
        return f.IndexIDMap(graph)
    quantizer = f.IndexFlatIP(d) if inner_product else f.IndexFlatL2(d)
    index = f.IndexIVFPQ(quantizer, d, s.nlist, s.pq_m, s.nbits, metric)
    index.nprobe = s.nprobe
    return index


def search_params(settings: IndexSettings, selector: Any) -> Any:
    """`faiss.SearchParameters` of the index's kind, restricted to the ids a
    `faiss.IDSelector` admits."""
    f = faiss()
    if settings.kind == "hnsw":
        return f.SearchParametersHNSW(sel=selector, efSearch=settings.ef_search)
    if settings.kind == "ivf-pq":
        return f.SearchParametersIVF(sel=selector, nprobe=settings.nprobe)
    return f.SearchParameters(sel=selector)


def resolve_ivf_pq(
    settings: IndexSettings, dim: int, sample_size: int, gallery_size: int | None
) -> IndexSettings:
    """IVF-PQ settings with `nlist` (from the gallery size, at most one list per 39 sample
    vectors) and `pq_m` filled in, checked against the dimension and the sample.

    Raises:
        ValueError: a `pq_m` that does not divide `dim`, or too small a sample.
    """
    nlist = settings.nlist or min(default_nlist(gallery_size or sample_size),
                                  max(1, sample_size // 39))  # fmt: skip
    pq_m = settings.pq_m or default_pq_m(dim)
    if dim % pq_m:
        raise ValueError(f"pq_m {pq_m} must divide the embedding dimension {dim}")
    need = 39 * max(nlist, 2**settings.nbits)  # FAISS: 39 vectors per list or PQ centroid
    if sample_size < need:
        lists = nlist > 2**settings.nbits  # the lists, not the codes, need the most
        why = (f"its {nlist} lists need 39 each" if lists else
               f"its {settings.nbits}-bit codes need 39 per each of their "
               f"{2**settings.nbits} centroids")  # fmt: skip
        fewer = ", or fewer lists (nlist)" if lists else ""
        raise ValueError(
            f"an IVF-PQ index needs a training sample of at least {need:,} vectors ({why}), "
            f"got {sample_size:,}: use --kind exact or hnsw for a gallery this small{fewer}"
        )
    return replace(settings, nlist=nlist, pq_m=pq_m)


def apply_search_settings(index: Any, settings: IndexSettings) -> None:
    """Set HNSW's `ef_search` or IVF's `nprobe` on a `faiss.Index` of the kind."""
    if settings.kind == "hnsw":
        faiss().downcast_index(index.index).hnsw.efSearch = settings.ef_search
    elif settings.kind == "ivf-pq":
        index.nprobe = settings.nprobe
