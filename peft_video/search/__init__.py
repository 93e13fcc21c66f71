"""Search your own videos: encode a collection once with an adapter (or the zero-shot baseline), store the embeddings
with their metadata and a FAISS index, and search it by text or by video, from Python, `peft-video index` /
`peft-video search`, contact-sheet pictures, or a Gradio page (docs/search.md).

    from peft_video.search import build_index, VideoSearchIndex
    build_index("data/test.csv", "indexes/test", adapter="outputs/demo_tfvl")
    build_index("data/shards/test", "indexes/shards", adapter="outputs/demo_tfvl")   # or from shards, not exploded
    hits = VideoSearchIndex.open("indexes/test").search("a red circle moves from left to right", k=10)
"""

from .encoder import VideoTextEncoder
from .index import BuildReport, IndexCorruptError, IndexMismatchError, build_index, read_index_info, rebuild_faiss
from .query import SearchHit, VideoSearchIndex
from .shard_sources import ShardSource, collect_shards, shard_member_bytes
from .sources import VIDEO_EXTENSIONS, VideoRecord, collect_videos

__all__ = [
    "BuildReport",
    "IndexCorruptError",
    "IndexMismatchError",
    "SearchHit",
    "ShardSource",
    "VIDEO_EXTENSIONS",
    "VideoRecord",
    "VideoSearchIndex",
    "VideoTextEncoder",
    "build_index",
    "collect_shards",
    "collect_videos",
    "read_index_info",
    "rebuild_faiss",
    "shard_member_bytes",
]
