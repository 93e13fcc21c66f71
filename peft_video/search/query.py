"""Searching an index: text -> videos, video -> videos, or raw vectors, through the index's FAISS file; queries are
encoded with the index's own adapter and base model (read from its `index.json`).

    index = VideoSearchIndex.open("indexes/test")
    for hit in index.search("a red circle moves from left to right", k=5):
        print(hit.rank, f"{hit.score:.3f}", hit.video_id, hit.video)
    index.search_video("videos/test/vid0007.mp4", k=5)        # a file (encoded), or the video_id of an indexed video
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import ann
from .encoder import VideoTextEncoder
from .index import INDEX_FILE, SHARDS_DIR, IndexCorruptError, _check_identity, _load_shard, _vectors, read_index_info

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchHit:
    """One result: its rank (1 = best), cosine similarity, and the video's metadata."""

    rank: int
    score: float
    video_id: str
    video: str
    duration: float
    captions: tuple[str, ...]
    row: int


class VideoSearchIndex:
    """A built index, opened for search: `search` (text), `search_video`, `search_vectors`."""

    def __init__(self, directory: Path, info: dict[str, Any], metadata, faiss_index, encoder=None):
        self.directory = directory
        self.info = info
        self.metadata = metadata
        self.faiss_index = faiss_index
        self._encoder = encoder

    @classmethod
    def open(
        cls,
        index_dir: str | os.PathLike,
        *,
        encoder: VideoTextEncoder | None = None,
        search_params: str | None = None,
    ) -> VideoSearchIndex:
        """Open an index folder, checking that its files agree with `index.json` (a missing or inconsistent file
        raises `IndexCorruptError` naming it). `encoder` (checked against the index's identity) is loaded from the
        index's own adapter and base model on the first text or file query otherwise."""
        import datasets

        directory = Path(index_dir)
        info = read_index_info(directory)
        if encoder is not None:
            _check_identity(info["identity"], encoder.identity, f"index {directory}")
        shards = []
        for shard in info["shards"]:
            data = _load_shard(directory, shard["name"])
            if len(data) != shard["rows"]:
                raise IndexCorruptError(
                    f"shard {directory / SHARDS_DIR / shard['name']} has {len(data)} rows, {INDEX_FILE} says "
                    f"{shard['rows']}; the index folder is damaged"
                )
            shards.append(data)
        if not info["num_videos"]:
            raise IndexCorruptError(f"index {directory} holds no videos (every video was unreadable)")
        metadata = datasets.concatenate_datasets(shards) if len(shards) > 1 else shards[0]
        faiss_path = directory / info["faiss_file"]
        if not faiss_path.is_file():
            raise IndexCorruptError(
                f"{faiss_path} named in {directory / INDEX_FILE} is missing; rebuild it from the stored embeddings "
                f"with `peft-video index --rebuild-faiss --out {directory}` (nothing is re-encoded)"
            )
        try:
            faiss_index = ann.read_faiss(faiss_path, info["search_params"] if search_params is None else search_params)
        except RuntimeError as err:
            raise IndexCorruptError(
                f"{faiss_path} cannot be read by FAISS ({err}); rebuild it with `peft-video index --rebuild-faiss "
                f"--out {directory}` (nothing is re-encoded)"
            ) from err
        if faiss_index.ntotal != len(metadata):
            raise IndexCorruptError(
                f"{faiss_path} holds {faiss_index.ntotal} vectors but the shards hold {len(metadata)} videos; rebuild "
                f"it with `peft-video index --rebuild-faiss --out {directory}`"
            )
        return cls(directory, info, metadata, faiss_index, encoder)

    def __len__(self) -> int:
        return len(self.metadata)

    @property
    def identity(self) -> dict[str, Any]:
        return self.info["identity"]

    @property
    def encoder(self) -> VideoTextEncoder:
        """The index's own encoder (its adapter on its base model), loaded on first use."""
        if self._encoder is None:
            identity = self.identity
            sampling = {k: v for k, v in identity["sampling"].items() if k not in ("image_size", "num_frames")}
            try:
                encoder = VideoTextEncoder.load(
                    identity["adapter"],
                    identity["base_model"],
                    num_frames=identity["sampling"]["num_frames"],
                    dtype=identity.get("dtype", "float32"),
                    **({} if identity["adapter"] else sampling),
                )
            except OSError as err:
                raise OSError(
                    f"index {self.directory} was built with adapter {identity['adapter']!r} on base model "
                    f"{identity['base_model']!r}, which cannot be loaded now ({err}); pass the encoder yourself: "
                    "VideoSearchIndex.open(path, encoder=VideoTextEncoder.load(adapter=..., base_model=...))"
                ) from err
            _check_identity(identity, encoder.identity, f"index {self.directory}")
            self._encoder = encoder
        return self._encoder

    def embeddings(self, rows: Any = None) -> np.ndarray:
        """Stored video embeddings float32 [N, P] (all rows, or `rows`)."""
        data = self.metadata if rows is None else self.metadata.select(list(rows))
        return _vectors(data)

    def hit(self, row: int, score: float, rank: int) -> SearchHit:
        record = self.metadata[int(row)]
        return SearchHit(
            rank,
            float(score),
            record["video_id"],
            record["video"],
            float(record["duration"]),
            tuple(record["captions"] or ()),
            int(row),
        )

    def row_of(self, video_id: str) -> int | None:
        """Row of `video_id` in the index, or None."""
        if not hasattr(self, "_rows"):
            self._rows = {v: i for i, v in enumerate(self.metadata["video_id"])}
        return self._rows.get(str(video_id))

    # ------------------------------------------------------------------------------------------------------ queries
    def search(self, query: str | list[str], k: int = 10) -> list[SearchHit] | list[list[SearchHit]]:
        """The k videos closest to a text query (a list of queries gives one list per query)."""
        queries = [query] if isinstance(query, str) else list(query)
        for position, text in enumerate(queries):
            if not isinstance(text, str) or not text.strip():
                where = "the query" if isinstance(query, str) else f"query {position}"
                raise ValueError(f"{where} is empty: give a few words describing the video to find")
        results = self.search_vectors(self.encoder.encode_text(queries), k)
        return results[0] if isinstance(query, str) else results

    def search_video(self, video: Any, k: int = 10, exclude_self: bool = True) -> list[SearchHit]:
        """The k videos closest to `video`: the `video_id` of an indexed video (its stored embedding is used and, with
        `exclude_self`, it is left out of the results), or a file / decoded array encoded with the index's adapter."""
        if isinstance(video, str) and self.row_of(video) is not None:
            row = self.row_of(video)
            vectors = self.embeddings([row])
        else:
            if isinstance(video, (str, os.PathLike)) and not Path(video).exists():
                raise FileNotFoundError(f"{video!r} is neither a video_id of index {self.directory} nor a file")
            row = None
            vectors = self.encoder.encode_videos([video])
        k = self._check_k(k)
        wanted = min(k + 1, len(self)) if (exclude_self and row is not None) else k
        hits = self.search_vectors(vectors, wanted)[0]
        if exclude_self and row is not None:
            hits = [h for h in hits if h.row != row][:k]
            hits = [SearchHit(rank, *_fields(h)) for rank, h in enumerate(hits, start=1)]
        return hits

    def search_vectors(self, vectors: np.ndarray, k: int = 10) -> list[list[SearchHit]]:
        """The k nearest videos of each query vector (float32 [Q, P], normalised) by the index's FAISS search."""
        k = self._check_k(k)
        scores, rows = self.faiss_index.search(np.ascontiguousarray(vectors, dtype=np.float32), k)
        return [
            [self.hit(row, score, rank) for rank, (row, score) in enumerate(zip(r, s), start=1) if row >= 0]
            for r, s in zip(rows, scores)
        ]

    def _check_k(self, k: int) -> int:
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if k > len(self):
            logger.warning(
                "k=%d exceeds the %d videos in index %s: returning all %d", k, len(self), self.directory, len(self)
            )
            return len(self)
        return k


def _fields(hit: SearchHit) -> tuple:
    return hit.score, hit.video_id, hit.video, hit.duration, hit.captions, hit.row
