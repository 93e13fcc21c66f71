"""Video data for text-video retrieval: decoding, frame sampling, CLIP transforms, datasets, cache and collate.

Typical use (the training script builds this from an adapter config):

    sampling = FrameSampling.from_config(adapter_config)
    data = load_manifest("train.csv", split="train")
    dataset = VideoTextDataset(data, sampling, ClipFrameTransform.from_processor(processor), train=True)
    loader = DataLoader(dataset, batch_size=32, num_workers=4, collate_fn=VideoTextCollator(tokenizer))
    errors = DataErrorSummary()
    for batch in errors.track(loader): ...
    print(errors)
"""

from .cache import FrameCache, build_frame_cache, default_cache_dir
from .collate import VideoTextCollator
from .dataset import DataErrorSummary, FailedSample, VideoTextDataset
from .decoding import (
    DecodedVideo,
    DecordReader,
    PyAVReader,
    TorchCodecReader,
    VideoMetadata,
    VideoReader,
    available_backends,
    decode_frames,
)
from .errors import DecoderCrashedError, DecodeTimeoutError, ManifestError, VideoDecodeError
from .grouped_batches import GroupedBatchSampler
from .isolation import IsolatedDecoder, decode_many
from .manifest import (
    VideoIndex,
    first_caption_per_video,
    from_hub_dataset,
    load_manifest,
    rows_to_dataset,
    unique_videos,
    write_manifest,
)
from .public_datasets import PUBLIC_DATASETS, BuildReport, build_public_dataset
from .sampling import FRAME_SAMPLING_STRATEGIES, SHORT_VIDEO_POLICIES, FrameSampling, sample_frame_indices
from .transforms import ClipFrameTransform

__all__ = [
    "PUBLIC_DATASETS",
    "BuildReport",
    "build_public_dataset",
    "ClipFrameTransform",
    "DataErrorSummary",
    "DecodeTimeoutError",
    "DecodedVideo",
    "DecoderCrashedError",
    "DecordReader",
    "FRAME_SAMPLING_STRATEGIES",
    "FailedSample",
    "FrameCache",
    "FrameSampling",
    "GroupedBatchSampler",
    "IsolatedDecoder",
    "ManifestError",
    "PyAVReader",
    "SHORT_VIDEO_POLICIES",
    "TorchCodecReader",
    "VideoDecodeError",
    "VideoIndex",
    "VideoMetadata",
    "VideoReader",
    "VideoTextCollator",
    "VideoTextDataset",
    "available_backends",
    "build_frame_cache",
    "decode_frames",
    "decode_many",
    "default_cache_dir",
    "first_caption_per_video",
    "from_hub_dataset",
    "load_manifest",
    "rows_to_dataset",
    "sample_frame_indices",
    "unique_videos",
    "write_manifest",
]
