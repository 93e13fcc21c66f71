"""Video data for text-video retrieval: decoding, frame sampling, CLIP transforms, datasets, cache and collate.

Typical use (the training script builds this from an adapter config):

    sampling = FrameSampling.from_config(adapter_config)
    data = load_manifest("train.csv", split="train")
    dataset = VideoTextDataset(data, sampling, ClipFrameTransform.from_processor(processor), train=True)
    loader = DataLoader(dataset, batch_size=32, num_workers=4, collate_fn=VideoTextCollator(tokenizer))
    errors = DataErrorSummary()
    for batch in errors.track(loader): ...
    print(errors)

At scale, from shards (docs/shards.md): `peft-video shard` writes them, `open_shards` / `webdataset_samples` /
`parquet_samples` / `dataset_samples` stream their raw samples, `StreamingVideoTextDataset` decodes them.
"""

from .cache import FrameCache, build_frame_cache, default_cache_dir
from .collate import VideoTextCollator
from .dataset import DataErrorSummary, FailedSample, VideoTextDataset, VideoTextSample
from .decoding import (
    DecodedVideo,
    DecordReader,
    PyAVReader,
    TorchCodecReader,
    VideoBytes,
    VideoMetadata,
    VideoReader,
    available_backends,
    decode_frames,
    partial_video,
    sample_name,
)
from .errors import DecoderCrashedError, DecodeTimeoutError, ManifestError, PartialVideoError, VideoDecodeError
from .grouped_batches import GroupedBatchSampler
from .isolation import IsolatedDecoder, decode_many
from .manifest import (
    VideoIndex,
    conflicting_video_ids,
    first_caption_per_video,
    from_hub_dataset,
    load_manifest,
    rows_to_dataset,
    shared_video_files,
    unique_videos,
    write_manifest,
)
from .public_datasets import PUBLIC_DATASETS, BuildReport, build_public_dataset
from .sampling import (
    DEFAULT_NUM_FRAMES,
    FRAME_SAMPLING_STRATEGIES,
    SHORT_VIDEO_POLICIES,
    FrameSampling,
    sample_frame_indices,
)
from .seeding import EpochSeededDataset
from .shard_writer import ShardReport, write_shards
from .shards import dataset_samples, expand_shards, open_shards, parquet_samples, shard_index, webdataset_samples
from .streaming import StreamingVideoTextDataset
from .transforms import ClipFrameTransform

__all__ = [
    "ShardReport",
    "StreamingVideoTextDataset",
    "VideoBytes",
    "dataset_samples",
    "expand_shards",
    "open_shards",
    "parquet_samples",
    "sample_name",
    "shard_index",
    "webdataset_samples",
    "write_shards",
    "PUBLIC_DATASETS",
    "BuildReport",
    "build_public_dataset",
    "ClipFrameTransform",
    "DEFAULT_NUM_FRAMES",
    "DataErrorSummary",
    "DecodeTimeoutError",
    "DecodedVideo",
    "DecoderCrashedError",
    "DecordReader",
    "EpochSeededDataset",
    "FRAME_SAMPLING_STRATEGIES",
    "FailedSample",
    "FrameCache",
    "FrameSampling",
    "GroupedBatchSampler",
    "IsolatedDecoder",
    "ManifestError",
    "PartialVideoError",
    "PyAVReader",
    "SHORT_VIDEO_POLICIES",
    "TorchCodecReader",
    "VideoDecodeError",
    "VideoIndex",
    "VideoMetadata",
    "VideoReader",
    "VideoTextCollator",
    "VideoTextDataset",
    "VideoTextSample",
    "available_backends",
    "build_frame_cache",
    "conflicting_video_ids",
    "decode_frames",
    "decode_many",
    "default_cache_dir",
    "first_caption_per_video",
    "from_hub_dataset",
    "load_manifest",
    "partial_video",
    "rows_to_dataset",
    "sample_frame_indices",
    "shared_video_files",
    "unique_videos",
    "write_manifest",
]
