"""The FAISS side of an index: which index type for how many vectors, building it, its search-time knobs.

Embeddings are L2-normalised, so inner product is cosine similarity and every index uses `METRIC_INNER_PRODUCT`.

- Exact (`"Flat"`, the default up to `EXACT_LIMIT` vectors): brute-force inner product, recall 1 by definition.
- Approximate, chosen by size (`factory="auto"` above `EXACT_LIMIT`): an inverted file over `nlist` k-means cells
  (`IVF{nlist},Flat`, vectors kept exactly, so the only loss is cells not probed), `nprobe` cells visited per query.
  `benchmarks/bench_index.py` measures recall@10 against exact search and latency at 10k to 1M vectors
  (`benchmarks/results/index.md`); `auto_factory` and `DEFAULT_NPROBE` come from that table.
- Anything else FAISS's `index_factory` understands (e.g. `"HNSW32,Flat"`, `"IVF4096,PQ64"`, `"IVF1024,SQ8"`), with
  search parameters in FAISS's `ParameterSpace` syntax (e.g. `"nprobe=64"`, `"efSearch=128"`).
"""

from __future__ import annotations

import math
import os

import numpy as np

EXACT_LIMIT = 20_000
"""Up to this many vectors `factory="auto"` keeps exact search. A flat query reads every vector (2 KB each): it stays
within the approximate index's latency target (5 ms on one core) while the vectors fit the CPU caches, and degrades
fast beyond, sharply so on a busy machine. `benchmarks/results/index.md`, one thread, load 5-6: 0.8 ms at 10k, 1.7 ms
at 20k, 12 ms at 50k, 16 ms at 100k (earlier runs at 50k: 5.2 ms at load 3, 16 ms at load 7), while from 20k an IVF
index answers in 0.2-0.6 ms at recall@10 1.000 for a build of 6-21 s (at 10k, k-means has too few points per cell:
recall 0.96)."""

DEFAULT_NPROBE = 32
"""Cells probed per query by the `auto` IVF index: recall@10 1.000 from 20k to 1M vectors on the benchmark's
clustered vectors, 1.5 ms per query at 1M on one thread (nprobe 8 already gives 0.9995 at 0.7 ms)."""

TRAINING_POINTS_PER_CELL = 64
"""k-means training sample per IVF cell (FAISS warns below 39; more costs training time for little gain)."""


def import_faiss():
    """The `faiss` module, or an ImportError that says what to install."""
    try:
        import faiss
    except ImportError as err:  # pragma: no cover - faiss-cpu is a core dependency
        raise ImportError("the index needs FAISS: pip install faiss-cpu") from err
    return faiss


def auto_factory(num_vectors: int) -> tuple[str, str]:
    """(factory string, search parameters) that `factory="auto"` picks for `num_vectors` vectors."""
    if num_vectors <= EXACT_LIMIT:
        return "Flat", ""
    return ivf_factory(num_vectors), f"nprobe={DEFAULT_NPROBE}"


def ivf_cells(num_vectors: int) -> int:
    """IVF cells for `num_vectors` vectors: about 4 x sqrt(N) (FAISS's rule of thumb: 4-16 x sqrt(N)), a power of 2."""
    return 2 ** round(math.log2(4 * math.sqrt(num_vectors)))


def ivf_factory(num_vectors: int) -> str:
    """The approximate index `auto` builds for `num_vectors` vectors (above `EXACT_LIMIT`): an inverted file with a
    flat (exact) search over its centroids, vectors kept exactly in the cells. Measured at 1M vectors against the same
    cells found through an HNSW graph (`IVF4096_HNSW32,Flat`, `benchmarks/results/index.md`): the graph misses cells
    (recall@10 0.95 at any nprobe, against 1.00) and did not build faster; it saved under 1 ms per query."""
    return f"IVF{ivf_cells(num_vectors)},Flat"


def build_faiss(vectors: np.ndarray, factory: str = "Flat", search_params: str = "", seed: int = 0):
    """A FAISS index of `vectors` (float32 [N, D], normalised) built with `factory`; trained on a seeded sample of at
    most `TRAINING_POINTS_PER_CELL` x cells vectors when the index type needs training."""
    faiss = import_faiss()
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2:
        raise ValueError(f"expected vectors [N, D], got shape {vectors.shape}")
    try:
        index = faiss.index_factory(vectors.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as err:
        raise ValueError(f"FAISS cannot build an index from the factory string {factory!r}: {err}") from err
    if not index.is_trained:
        cells = _cells(index)
        if len(vectors) < cells:
            raise ValueError(
                f"factory {factory!r} has {cells} cells but the collection has only {len(vectors)} vectors; "
                "use fewer cells or factory='auto' (exact search for small collections)"
            )
        limit = max(cells * TRAINING_POINTS_PER_CELL, 10_000)
        sample = vectors
        if len(vectors) > limit:
            sample = vectors[np.sort(np.random.default_rng(seed).choice(len(vectors), limit, replace=False))]
        index.train(sample)
    add_vectors(index, vectors)
    set_search_params(index, search_params)
    return index


def _cells(index) -> int:
    faiss = import_faiss()
    ivf = faiss.try_extract_index_ivf(index)
    return int(ivf.nlist) if ivf is not None else 1


def add_vectors(index, vectors: np.ndarray, chunk: int = 65_536) -> None:
    """Append vectors (ids continue from `index.ntotal`), in chunks to bound temporary memory."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    for start in range(0, len(vectors), chunk):
        index.add(vectors[start : start + chunk])


def set_search_params(index, search_params: str) -> None:
    """Apply FAISS `ParameterSpace` settings such as `"nprobe=32"` or `"efSearch=128"` (empty: none)."""
    if not search_params:
        return
    faiss = import_faiss()
    try:
        faiss.ParameterSpace().set_index_parameters(index, search_params)
    except RuntimeError as err:
        raise ValueError(f"FAISS rejects the search parameters {search_params!r}: {err}") from err


def write_faiss(index, path: str | os.PathLike) -> None:
    import_faiss().write_index(index, str(path))


def read_faiss(path: str | os.PathLike, search_params: str = ""):
    faiss = import_faiss()
    index = faiss.read_index(str(path))
    set_search_params(index, search_params)
    return index
