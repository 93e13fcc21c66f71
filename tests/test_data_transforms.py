"""CLIP preprocessing in torch against CLIPImageProcessor, and the collator's batch contract."""

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import CLIPImageProcessor, PreTrainedTokenizerFast
from transformers.utils import logging as hf_logging

from peft_video.data import ClipFrameTransform, FailedSample, VideoTextCollator


def _smooth_random_frames(shape, seed=0):
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, size=shape, dtype=np.uint8).astype(np.float32)
    frames = (frames + np.roll(frames, 1, axis=1) + np.roll(frames, 1, axis=2)) / 3  # natural images are smooth
    return frames.astype(np.uint8)


@pytest.fixture(scope="module")
def processor():
    hf_logging.set_verbosity_error()
    return CLIPImageProcessor()


@pytest.mark.parametrize("height,width", [(48, 64), (240, 320), (17, 33), (300, 200), (224, 224)])
def test_transform_matches_clip_image_processor(processor, height, width):
    frames = _smooth_random_frames((2, height, width, 3))
    expected = processor(images=list(frames), return_tensors="pt")["pixel_values"]
    got = ClipFrameTransform.from_processor(processor)(torch.from_numpy(frames))
    assert got.shape == expected.shape == (2, 3, 224, 224)
    # PIL's and torch's antialiased bicubic kernels differ by a few uint8 levels at isolated pixels when shrinking.
    assert (got - expected).abs().max() < 0.15
    assert (got - expected).abs().mean() < 0.005


def test_transform_reads_processor_settings_and_image_size_override(processor):
    transform = ClipFrameTransform.from_processor(processor)
    assert (transform.shortest_edge, transform.crop_size, transform.interpolation) == (224, 224, "bicubic")
    assert transform.mean == pytest.approx(processor.image_mean)
    small = ClipFrameTransform.from_processor(processor, image_size=32)
    assert small(torch.zeros(1, 48, 64, 3, dtype=torch.uint8)).shape == (1, 3, 32, 32)
    with pytest.raises(ValueError, match=r"\[T, H, W, 3\]"):
        transform(torch.zeros(1, 3, 48, 64, dtype=torch.uint8))


def _tokenizer():
    vocab = {"<unk>": 0, "a": 1, "dog": 2, "runs": 3, "fast": 4, "<|startoftext|>": 5, "<|endoftext|>": 6}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>", special_tokens=[("<|startoftext|>", 5), ("<|endoftext|>", 6)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        unk_token="<unk>",
    )


def _sample(video_id, frames=4, real=4, caption="a dog runs"):
    mask = torch.zeros(frames, dtype=torch.bool)
    mask[:real] = True
    return {
        "pixel_values": torch.randn(frames, 3, 8, 8),
        "video_mask": mask,
        "video_id": video_id,
        "caption": caption,
        "video": f"/v/{video_id}.mp4",
    }


def test_collator_stacks_tokenizes_and_drops_failed_samples():
    collate = VideoTextCollator(tokenizer=_tokenizer(), max_text_length=6)
    batch = collate(
        [
            _sample("a", real=2),
            FailedSample("/v/bad.mp4", "file is empty (0 bytes)"),
            _sample("b", caption="a dog runs fast fast fast fast"),
        ]
    )
    assert batch["pixel_values"].shape == (2, 4, 3, 8, 8) and batch["pixel_values"].dtype == torch.float32
    assert batch["video_mask"].dtype == torch.bool and batch["video_mask"][0].tolist() == [True, True, False, False]
    assert batch["video_id"] == ["a", "b"] and batch["batch_size"] == 2
    assert batch["errors"] == [{"video": "/v/bad.mp4", "reason": "file is empty (0 bytes)"}]
    assert batch["input_ids"].shape == batch["attention_mask"].shape == (2, 6)
    assert batch["input_ids"][0].tolist() == [5, 1, 2, 3, 6, 6]  # padded with EOT
    assert batch["attention_mask"][0].tolist() == [1, 1, 1, 1, 1, 0]
    assert batch["input_ids"][1, -1].item() == 6  # truncation keeps EOT last


def test_collator_reports_a_batch_whose_samples_all_failed():
    batch = VideoTextCollator()([FailedSample("/v/x.mp4", "file not found")])
    assert batch["batch_size"] == 0 and "pixel_values" not in batch and len(batch["errors"]) == 1
