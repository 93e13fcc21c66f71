"""`VideoTextProcessor`: files, decoded arrays or `datasets` rows -> `pixel_values` + `video_mask`, and captions ->
`input_ids` + `attention_mask`, exactly as training and evaluation prepare them.

    processor = VideoTextProcessor.from_pretrained("outputs/demo_tfvl")     # an adapter folder or Hub id
    inputs = processor(text=["a red circle moves from left to right"], videos=["clip.mp4"])
    model.get_video_features(pixel_values=inputs["pixel_values"], video_mask=inputs["video_mask"])

Why a processor of our own rather than `CLIPProcessor(videos=...)` (which silently drops the videos) or transformers'
`BaseVideoProcessor`: the latter decodes with torchcodec/torchvision, samples frames uniformly and resizes with
torchvision, so it cannot reproduce what an adapter was trained on (decord with a PyAV fallback, segment / chunked /
fps sampling with a short-video policy, the frame mask, `peft_video.data.ClipFrameTransform`). This class therefore
subclasses transformers' `ProcessorMixin` (one object, `save_pretrained` / `from_pretrained` / `push_to_hub`,
`processor_config.json` beside the tokenizer files, Hub and offline-cache resolution, a `BatchFeature` out) with the
tokenizer as its only sub-processor, and does the video side itself by calling the very functions the datasets call:
`decode_frames` (same backend chain), `sample_frame_indices`, `ClipFrameTransform.video_pixel_values`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from transformers import BatchFeature
from transformers.processing_utils import ProcessorMixin

from .data.collate import VideoTextCollator
from .data.decoding import _pad_frames, decode_frames
from .data.sampling import FrameSampling, sample_frame_indices
from .data.transforms import ClipFrameTransform

PROCESSOR_FILE = "processor_config.json"
ADAPTER_CONFIG_FILE = "adapter_config.json"


def _hub_file(source: str | os.PathLike, name: str, **hub_kwargs: Any) -> str | None:
    """Local path of `name` in a folder or Hub repository (the Hub cache when offline); None when it has none."""
    from transformers.utils import cached_file

    try:
        return cached_file(
            str(source),
            name,
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
            **hub_kwargs,
        )
    except OSError:
        return None


def _read_json(source: str | os.PathLike, name: str, **hub_kwargs: Any) -> dict[str, Any] | None:
    path = _hub_file(source, name, **hub_kwargs)
    return json.loads(open(path, encoding="utf-8").read()) if path else None


def transform_for_base_model(base_model: str | os.PathLike, image_size: int | None = None) -> ClipFrameTransform:
    """The CLIP preprocessing of `base_model` (folder or Hub id): its `preprocessor_config.json` settings (resize,
    crop, mean/std, resampling), with `image_size` (the model's input side) overriding resize and crop as training
    does; OpenAI CLIP's settings at `image_size` when the model has no preprocessor file."""
    settings = _read_json(base_model, "preprocessor_config.json")
    if settings is None:
        if image_size is None:
            raise ValueError(f"{base_model!r} has no preprocessor_config.json; give image_size")
        return ClipFrameTransform.for_image_size(image_size)
    return ClipFrameTransform.from_processor(SimpleNamespace(**settings), image_size=image_size)


def base_model_image_size(base_model: str | os.PathLike) -> int:
    """The vision input side of a CLIPModel folder or Hub id, read from its `config.json`."""
    config = _read_json(base_model, "config.json")
    if config is None:
        raise OSError(f"base model {str(base_model)!r} has no config.json (not a CLIPModel folder or Hub id)")
    try:
        return int(config["vision_config"]["image_size"])
    except (KeyError, TypeError) as err:
        raise ValueError(f"config.json of {str(base_model)!r} has no vision_config.image_size") from err


class VideoTextProcessor(ProcessorMixin):
    """Turns videos and captions into the inputs of a peft_video model, as training and evaluation do.

    Args:
        tokenizer: The base model's CLIP tokenizer.
        sampling: A `FrameSampling` (or its dict): frames, strategy, fps, chunks, short-video policy, image size.
        transform: A `ClipFrameTransform` (or its dict): resize, crop, mean/std, interpolation.
        max_text_length: Caption length in tokens, SOT and EOT included (the adapter's `max_text_length`).
        video_backend: Decoder chain, as the datasets' `backend` ("auto": decord, then PyAV, then torchcodec).

    Calling it: `processor(text=None, videos=None)` returns a `BatchFeature` with `input_ids` / `attention_mask`
    [B, max_text_length] for `text` (a string or a list) and `pixel_values` float32 [B, T, 3, S, S] / `video_mask` bool
    [B, T] for `videos`. A video is a file path, a decoded uint8 array or tensor of every frame ([N, H, W, 3] or
    [N, 3, H, W]; sampled like a file unless `do_sample_frames=False`), a `datasets` row (a mapping with a `video`
    column holding a path or a `Video(decode=False)` value), or a list of these or a `datasets.Dataset`.
    An unreadable file raises `VideoDecodeError` naming it, as the dataset path does.
    """

    def __init__(
        self,
        tokenizer: Any = None,
        sampling: FrameSampling | Mapping[str, Any] | None = None,
        transform: ClipFrameTransform | Mapping[str, Any] | None = None,
        max_text_length: int = 32,
        video_backend: str = "auto",
        **kwargs: Any,
    ):
        if isinstance(sampling, Mapping):
            sampling = FrameSampling(**sampling)
        self.sampling = sampling or FrameSampling()
        if isinstance(transform, Mapping):
            transform = ClipFrameTransform(**{k: tuple(v) if isinstance(v, list) else v for k, v in transform.items()})
        self.transform = transform or ClipFrameTransform.for_image_size(self.sampling.image_size or 224)
        if max_text_length < 2:
            raise ValueError(f"max_text_length must be at least 2 (SOT and EOT), got {max_text_length}")
        self.max_text_length = int(max_text_length)
        self.video_backend = video_backend
        if tokenizer is None:  # a video-only processor (ProcessorMixin insists on a tokenizer instance)
            self.tokenizer, self.chat_template = None, kwargs.pop("chat_template", None)
            if kwargs:
                raise TypeError(f"unexpected argument(s) {sorted(kwargs)}")
            return
        super().__init__(tokenizer, **kwargs)

    # ----------------------------------------------------------------------------------------------- construction
    @classmethod
    def from_base_model(
        cls,
        base_model: str | os.PathLike,
        *,
        tokenizer: Any = None,
        max_text_length: int = 32,
        video_backend: str = "auto",
        **sampling: Any,
    ) -> VideoTextProcessor:
        """A processor for a base CLIPModel (the zero-shot baseline, or before training): its tokenizer and image
        preprocessing, frames drawn with `sampling` (`FrameSampling` fields: `num_frames`, `frame_sampling`, ...)."""
        from transformers import AutoTokenizer

        image_size = sampling.pop("image_size", None) or base_model_image_size(base_model)
        frame_sampling = FrameSampling(image_size=image_size, **sampling)
        return cls(
            tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(str(base_model)),
            sampling=frame_sampling,
            transform=transform_for_base_model(base_model, image_size),
            max_text_length=max_text_length,
            video_backend=video_backend,
        )

    @classmethod
    def from_adapter(
        cls, adapter: str | os.PathLike, *, base_model: str | os.PathLike | None = None, **hub_kwargs: Any
    ) -> VideoTextProcessor:
        """A processor for an adapter (folder or Hub id) that was saved without one: sampling and `max_text_length`
        from its `adapter_config.json`, tokenizer and image preprocessing from its base model (`base_model`, default
        the config's `base_model_name_or_path`)."""
        from transformers import AutoTokenizer

        config = _read_json(adapter, ADAPTER_CONFIG_FILE, **hub_kwargs)
        if config is None:
            raise OSError(
                f"{str(adapter)!r} is neither a folder nor a reachable Hub repository with {ADAPTER_CONFIG_FILE} "
                f"or {PROCESSOR_FILE}"
            )
        base = base_model or config.get("base_model_name_or_path")
        if not base:
            raise ValueError(
                f"{ADAPTER_CONFIG_FILE} of {str(adapter)!r} does not name its base model; pass base_model"
            )
        image_size = config.get("image_size") or base_model_image_size(base)
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(base))
        except (OSError, ValueError) as err:
            raise OSError(
                f"the tokenizer of base model {str(base)!r} (of adapter {str(adapter)!r}) cannot be loaded: {err}"
            ) from err
        return cls(
            tokenizer,
            sampling=FrameSampling.from_config(config, image_size=image_size),
            transform=transform_for_base_model(base, image_size),
            max_text_length=config.get("max_text_length", 32),
        )

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any) -> VideoTextProcessor:
        """Load a saved processor (`processor_config.json` + tokenizer files, e.g. saved beside an adapter); an
        adapter folder or Hub id without one is handled by `from_adapter`, a base CLIPModel by `from_base_model`."""
        source = pretrained_model_name_or_path
        hub_kwargs = {k: kwargs[k] for k in ("revision", "token", "cache_dir") if k in kwargs}
        if _hub_file(source, PROCESSOR_FILE, **hub_kwargs):
            return super().from_pretrained(source, **kwargs)
        if _hub_file(source, ADAPTER_CONFIG_FILE, **hub_kwargs):
            return cls.from_adapter(source, base_model=kwargs.get("base_model"), **hub_kwargs)
        if _hub_file(source, "config.json", **hub_kwargs):
            sampling = {k: v for k, v in kwargs.items() if k in FrameSampling.__dataclass_fields__}
            return cls.from_base_model(source, **sampling)
        raise OSError(
            f"{str(source)!r} holds no {PROCESSOR_FILE}, {ADAPTER_CONFIG_FILE} or config.json (a processor, an "
            "adapter or a base CLIPModel), or is not a reachable Hub repository"
        )

    def to_dict(self) -> dict[str, Any]:
        output = super().to_dict()
        output["sampling"] = self.sampling.to_dict()
        output["transform"] = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self.transform).items()}
        return output

    # ------------------------------------------------------------------------------------------------------ calls
    def __call__(
        self,
        text: str | Sequence[str] | None = None,
        videos: Any = None,
        *,
        do_sample_frames: bool = True,
        fps: float | None = None,
        return_tensors: str | None = "pt",
        **kwargs: Any,
    ) -> BatchFeature:
        """Tokenize `text` and/or prepare `videos` (see the class docstring). `fps` is the frame rate of decoded
        arrays (needed only by `frame_sampling="fps"`)."""
        if kwargs:
            raise TypeError(f"unexpected argument(s) {sorted(kwargs)}")
        if return_tensors not in ("pt", None):
            raise ValueError(
                f"VideoTextProcessor returns torch tensors only (return_tensors='pt'), got {return_tensors!r}"
            )
        if text is None and videos is None:
            raise ValueError("give text, videos or both")
        data: dict[str, Any] = {}
        if text is not None:
            data.update(self.tokenize(text))
        if videos is not None:
            data.update(self.process_videos(videos, do_sample_frames=do_sample_frames, fps=fps))
        return BatchFeature(data=data)

    def tokenize(self, text: str | Sequence[str]) -> dict[str, torch.Tensor]:
        """`input_ids` / `attention_mask` [B, max_text_length] as the training collator makes them (padded, truncated
        captions ending in EOT)."""
        if self.tokenizer is None:
            raise ValueError("this processor has no tokenizer (built for videos only); it cannot encode text")
        texts = [text] if isinstance(text, str) else list(text)
        if not texts:
            raise ValueError("text is an empty list")
        for position, caption in enumerate(texts):
            if not isinstance(caption, str) or not caption.strip():
                raise ValueError(f"text[{position}] is empty or not a string: {caption!r}")
        return VideoTextCollator(self.tokenizer, max_text_length=self.max_text_length).tokenize(texts)

    def process_videos(
        self, videos: Any, *, do_sample_frames: bool = True, fps: float | None = None
    ) -> dict[str, Any]:
        """`pixel_values` [B, T, 3, S, S] and `video_mask` [B, T] for one video or a batch (class docstring)."""
        clips = [self.process_video(video, do_sample_frames=do_sample_frames, fps=fps) for video in _as_batch(videos)]
        if not clips:
            raise ValueError("videos is empty")
        return {
            "pixel_values": torch.stack([pixel_values for pixel_values, _ in clips]),
            "video_mask": torch.stack([mask for _, mask in clips]),
        }

    def process_video(
        self, video: Any, *, do_sample_frames: bool = True, fps: float | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(`pixel_values` [T, 3, S, S], `video_mask` [T]) of one video."""
        if isinstance(video, Mapping):
            video = _row_video(video)
        if isinstance(video, (str, os.PathLike)):
            decoded = decode_frames(video, self.sampling, train=False, backend=self.video_backend)
            frames, mask = decoded.frames, decoded.mask
        else:
            frames, mask = self._sample_array(video, do_sample_frames, fps)
        return self.transform.video_pixel_values(frames, mask), mask

    def _sample_array(
        self, video: Any, do_sample_frames: bool, fps: float | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        frames = _frames_tensor(video)
        total = self.sampling.num_frames
        if do_sample_frames:
            indices, mask = sample_frame_indices(frames.shape[0], fps or 0.0, self.sampling)
            frames = frames[indices]
        else:  # already sampled: keep them, real frames first, zero slots after
            if frames.shape[0] > total:
                raise ValueError(
                    f"do_sample_frames=False with {frames.shape[0]} frames; this processor takes at most {total}"
                )
            mask = torch.zeros(total, dtype=torch.bool)
            mask[: frames.shape[0]] = True
        return _pad_frames(frames, total), mask


def _as_batch(videos: Any) -> list[Any]:
    if isinstance(videos, (str, os.PathLike, Mapping)):
        return [videos]
    if isinstance(videos, (np.ndarray, torch.Tensor)):
        return [videos] if videos.ndim == 4 else list(videos)
    return list(videos)  # a list, or a datasets.Dataset (its rows)


def _row_video(row: Mapping[str, Any]) -> Any:
    """The video of a `datasets` row: its `video` column as a path, a `Video(decode=False)` value or an array."""
    if "video" not in row and "path" in row:  # the `Video(decode=False)` value itself
        value = row
    elif "video" in row:
        value = row["video"]
    else:
        raise ValueError(f"a dataset row needs a `video` column; got columns {sorted(row)}")
    if isinstance(value, Mapping):
        if value.get("path"):
            return value["path"]
        if value.get("bytes"):
            raise ValueError(
                "the row holds the video as embedded bytes, not a path; write the bytes to a file and pass its path"
            )
        raise ValueError(f"the row's video value has neither path nor bytes: {sorted(value)}")
    if hasattr(value, "get_frames_at") or type(value).__name__ == "VideoDecoder":
        raise ValueError(
            "the row's video was decoded by datasets (a decoding Video feature, torchcodec); cast the column first: "
            "dataset = dataset.cast_column('video', datasets.Video(decode=False))"
        )
    return value


def _frames_tensor(video: Any) -> torch.Tensor:
    frames = torch.as_tensor(np.asarray(video)) if not isinstance(video, torch.Tensor) else video
    if frames.ndim != 4 or 3 not in (frames.shape[-1], frames.shape[1]):
        raise ValueError(f"a decoded video must be [N, H, W, 3] or [N, 3, H, W], got shape {tuple(frames.shape)}")
    if frames.dtype != torch.uint8:
        raise ValueError(f"a decoded video must be uint8 RGB (0-255), got {frames.dtype}")
    if frames.shape[-1] != 3:
        frames = frames.permute(0, 2, 3, 1)
    if frames.shape[0] < 1:
        raise ValueError("a decoded video has no frames")
    return frames.contiguous()


__all__ = ["VideoTextProcessor", "base_model_image_size", "transform_for_base_model"]
