"""VideoTextProcessor: the same pixel_values / video_mask as the training and evaluation datasets (files, decoded
arrays, `datasets` rows), the same tokens as the collator, save/load round trips, built from an adapter (folder or Hub
id) or a base model, and the dataset path's named errors for bad files."""

from __future__ import annotations

import json
import shutil

import datasets
import pytest
import torch
from train_fixtures import write_tiny_clip
from video_fixtures import write_random_bytes, write_video, write_zero_byte

from peft_video.data import (
    ClipFrameTransform,
    FrameSampling,
    PyAVReader,
    VideoDecodeError,
    VideoTextCollator,
    VideoTextDataset,
    load_manifest,
    write_manifest,
)
from peft_video.loading import load_frame_transform
from peft_video.processing import VideoTextProcessor

TRANSFORM = ClipFrameTransform(shortest_edge=32, crop_size=32, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("processor_videos")
    paths = {
        "long": write_video(d / "long.mp4", num_frames=20, width=64, height=48, pattern="moving"),
        "short": write_video(d / "short.mp4", num_frames=3, width=40, height=56, pattern="moving"),
        "avi": write_video(d / "clip.avi", codec="mpeg4", num_frames=12, fps=12),
        "zero": write_zero_byte(d / "zero.mp4"),
        "noise": write_random_bytes(d / "noise.mp4"),
    }
    return {k: str(v) for k, v in paths.items()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny CLIP folder with a preprocessor_config.json of its own, and a TFVL adapter saved on it."""
    from peft import get_peft_model
    from transformers import CLIPModel

    from peft_video import TFVLConfig
    from peft_video.synthetic import TINY_CLIP_PATH

    root = tmp_path_factory.mktemp("processor_models")
    clip_dir = write_tiny_clip(root / "clip")
    settings = json.loads((TINY_CLIP_PATH / "preprocessor_config.json").read_text())
    settings.update(image_mean=[0.5, 0.4, 0.3], image_std=[0.2, 0.25, 0.3], size={"shortest_edge": 40})
    (clip_dir / "preprocessor_config.json").write_text(json.dumps(settings))
    config = TFVLConfig(num_frames=6, frame_sampling="chunked_segments", frame_chunk_size=3, max_text_length=12)
    get_peft_model(CLIPModel.from_pretrained(clip_dir), config).save_pretrained(root / "adapter")
    return clip_dir, root / "adapter"


SAMPLINGS = [
    FrameSampling(num_frames=4, image_size=32),
    FrameSampling(num_frames=6, frame_sampling="chunked_segments", frame_chunk_size=3, image_size=32),
    FrameSampling(num_frames=5, frame_sampling="fps", sampling_fps=4.0, image_size=32),
    FrameSampling(num_frames=4, image_size=32, short_video_policy="repeat"),
]


@pytest.mark.parametrize("sampling", SAMPLINGS, ids=lambda s: f"{s.frame_sampling}-{s.short_video_policy}")
def test_files_give_exactly_the_dataset_inputs(videos, tmp_path, sampling):
    names = ["long", "short", "avi"]
    manifest = write_manifest(
        [{"video": videos[n], "caption": f"caption {n}", "video_id": n} for n in names], tmp_path / "m.csv"
    )
    dataset = VideoTextDataset(load_manifest(manifest), sampling, TRANSFORM, decode_timeout=None)
    processor = VideoTextProcessor(None, sampling=sampling, transform=TRANSFORM)
    out = processor(videos=[videos[n] for n in names])
    assert out["pixel_values"].shape == (3, sampling.num_frames, 3, 32, 32)
    assert out["pixel_values"].dtype == torch.float32 and out["video_mask"].dtype == torch.bool
    for row in range(len(names)):
        item = dataset[row]
        assert torch.equal(out["pixel_values"][row], item["pixel_values"]), names[row]
        assert torch.equal(out["video_mask"][row], item["video_mask"]), names[row]
    if sampling.short_video_policy == "pad":  # the 3-frame video is padded with exact zeros
        assert out["video_mask"][1].sum() < sampling.num_frames
        assert out["pixel_values"][1][~out["video_mask"][1]].abs().sum() == 0


def test_decoded_arrays_and_dataset_rows_match_files(videos):
    sampling = SAMPLINGS[1]
    processor = VideoTextProcessor(None, sampling=sampling, transform=TRANSFORM, video_backend="pyav")
    reader = PyAVReader()
    meta = reader.open(videos["long"])
    every_frame = reader.get_frames(range(meta.num_frames))  # [N, H, W, 3] uint8: the whole video decoded
    from_file = processor(videos=videos["long"])
    from_array = processor(videos=[every_frame.numpy()])
    from_channels_first = processor(videos=every_frame.permute(0, 3, 1, 2))
    from_row = processor(videos={"video": videos["long"], "caption": "x"})
    from_video_value = processor(videos=[{"video": {"path": videos["long"], "bytes": None}}])
    hub_rows = datasets.Dataset.from_dict({"video": [videos["long"], videos["avi"]]}).cast_column(
        "video", datasets.Video(decode=False)
    )
    from_dataset = processor(videos=hub_rows)
    for other in (from_array, from_channels_first, from_row, from_video_value):
        assert torch.equal(other["pixel_values"], from_file["pixel_values"])
        assert torch.equal(other["video_mask"], from_file["video_mask"])
    assert torch.equal(from_dataset["pixel_values"][0], from_file["pixel_values"][0])
    assert from_dataset["pixel_values"].shape[0] == 2

    # already sampled frames: kept as given, padded slots masked
    sampled = every_frame[:4]
    out = processor(videos=sampled.numpy(), do_sample_frames=False)
    assert out["video_mask"][0].tolist() == [True] * 4 + [False] * 2
    assert torch.equal(out["pixel_values"][0][:4], TRANSFORM(sampled))


def test_text_matches_the_training_collator():
    from peft_video.synthetic.tokenizer import build_tokenizer

    tokenizer = build_tokenizer()
    processor = VideoTextProcessor(tokenizer, max_text_length=8)
    captions = ["a red circle on the left", "a small blue square moves from left to right at the top"]
    out = processor(text=captions)
    expected = VideoTextCollator(tokenizer, max_text_length=8).tokenize(captions)
    assert torch.equal(out["input_ids"], expected["input_ids"])
    assert torch.equal(out["attention_mask"], expected["attention_mask"])
    assert out["input_ids"][1, -1] == tokenizer.eos_token_id  # truncated caption still ends in EOT
    assert torch.equal(processor(text=captions[0])["input_ids"], expected["input_ids"][:1])
    with pytest.raises(ValueError, match=r"text\[1\] is empty"):
        processor(text=["a red circle", "  "])


def test_save_and_load_round_trip(videos, tmp_path):
    from peft_video.synthetic.tokenizer import build_tokenizer

    processor = VideoTextProcessor(build_tokenizer(), sampling=SAMPLINGS[2], transform=TRANSFORM, max_text_length=10)
    processor.save_pretrained(tmp_path / "proc")
    saved = json.loads((tmp_path / "proc" / "processor_config.json").read_text())
    assert saved["sampling"] == SAMPLINGS[2].to_dict()
    assert saved["transform"]["mean"] == [0.5, 0.4, 0.3] and saved["max_text_length"] == 10
    loaded = VideoTextProcessor.from_pretrained(tmp_path / "proc")
    assert loaded.sampling == processor.sampling and loaded.transform == processor.transform
    both = dict(text=["a red circle"], videos=[videos["avi"]])
    a, b = processor(**both), loaded(**both)
    for key in ("input_ids", "attention_mask", "pixel_values", "video_mask"):
        assert torch.equal(a[key], b[key]), key


def test_from_adapter_reproduces_the_training_script(tiny, videos, tmp_path):
    """Sampling from adapter_config.json, preprocessing from the base model's files: what train.py feeds the model."""
    from peft import PeftConfig
    from transformers import AutoTokenizer

    clip_dir, adapter = tiny
    processor = VideoTextProcessor.from_pretrained(adapter)
    config = PeftConfig.from_pretrained(adapter)
    assert processor.sampling == FrameSampling.from_config(config, image_size=32)
    assert processor.sampling.frame_sampling == "chunked_segments" and processor.sampling.num_frames == 6
    assert processor.transform == load_frame_transform(str(clip_dir), 32)  # what train.py uses
    assert processor.transform.mean == (0.5, 0.4, 0.3)  # read from the base model's preprocessor_config.json
    assert processor.max_text_length == 12
    tokenizer = AutoTokenizer.from_pretrained(clip_dir)
    expected = VideoTextCollator(tokenizer, max_text_length=12).tokenize(["a red circle"])
    assert torch.equal(processor(text="a red circle")["input_ids"], expected["input_ids"])

    # the one call train.py will make: saved beside the adapter, reloaded by id alone
    processor.save_pretrained(adapter)
    again = VideoTextProcessor.from_pretrained(adapter)
    assert again.sampling == processor.sampling and again.transform == processor.transform
    assert (adapter / "adapter_config.json").is_file() and (adapter / "processor_config.json").is_file()


def test_from_base_model_and_from_a_hub_id(tiny, tmp_path, monkeypatch):
    import huggingface_hub.constants

    clip_dir, adapter = tiny
    zero_shot = VideoTextProcessor.from_base_model(clip_dir, num_frames=8)
    assert zero_shot.sampling == FrameSampling(num_frames=8, image_size=32)
    assert zero_shot.transform.crop_size == 32 and zero_shot.transform.std == (0.2, 0.25, 0.3)

    commit = "0" * 40
    snapshot = tmp_path / "hub" / "models--someone--tiny-tfvl" / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.copyfile(adapter / name, snapshot / name)
    (tmp_path / "hub" / "models--someone--tiny-tfvl" / "refs").mkdir()
    (tmp_path / "hub" / "models--someone--tiny-tfvl" / "refs" / "main").write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    by_id = VideoTextProcessor.from_pretrained("someone/tiny-tfvl")
    assert by_id.sampling.num_frames == 6 and by_id.transform.mean == (0.5, 0.4, 0.3)
    with pytest.raises(OSError, match="nobody/nothing"):
        VideoTextProcessor.from_pretrained("nobody/nothing")


@pytest.mark.parametrize("name", ["zero", "noise", "missing"])
def test_bad_files_raise_the_dataset_paths_named_error(videos, tmp_path, name):
    path = videos.get(name, str(tmp_path / "missing.mp4"))
    sampling = SAMPLINGS[0]
    manifest = write_manifest([{"video": path, "caption": "x", "video_id": "x"}], tmp_path / "m.csv")
    dataset = VideoTextDataset(load_manifest(manifest), sampling, TRANSFORM, decode_timeout=None, on_error="raise")
    with pytest.raises(VideoDecodeError) as from_dataset:
        dataset[0]
    processor = VideoTextProcessor(None, sampling=sampling, transform=TRANSFORM)
    with pytest.raises(VideoDecodeError) as from_processor:
        processor(videos=[videos["long"], path])
    assert from_processor.value.path == path and from_processor.value.reason == from_dataset.value.reason
    assert path in str(from_processor.value)


def test_bad_arrays_and_rows_are_named():
    processor = VideoTextProcessor(None, sampling=SAMPLINGS[0], transform=TRANSFORM)
    with pytest.raises(ValueError, match="uint8"):
        processor(videos=torch.rand(4, 8, 8, 3))
    with pytest.raises(ValueError, match=r"\[N, H, W, 3\]"):
        processor(videos=torch.zeros(4, 8, 8, 5, dtype=torch.uint8))
    with pytest.raises(ValueError, match="embedded bytes"):
        processor(videos={"video": {"path": None, "bytes": b"1234"}})
    with pytest.raises(ValueError, match="`video` column"):
        processor(videos={"clip": "x.mp4"})
    with pytest.raises(ValueError, match="give text, videos or both"):
        processor()
