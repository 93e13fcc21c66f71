"""What a training run leaves for the people and programs that use its adapter: the `VideoTextProcessor` beside the
adapter (final folder and best_adapter/) giving exactly the inputs the run evaluated, galleries of the worst-ranked
validation captions in TensorBoard, the model card's picture (written beside it, pushed with it), and the gallery
`examples/evaluate.py` writes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard
from huggingface_hub.repocard_data import model_index_to_eval_results
from PIL import Image
from train_fixtures import WORLD, base_argv, load_script, recording_hub_uploads, write_tiny_clip, write_tiny_world

from peft_video.hub import write_model_card
from peft_video.processing import VideoTextProcessor

GALLERY_TAG = "validation/worst_queries"


def green_pixels(image: Image.Image) -> int:
    """Pixels of the frame drawn around a ground-truth row (contact sheets' GROUND_TRUTH colour)."""
    pixels = np.asarray(image.convert("RGB")).astype(int)
    return int(((pixels[..., 1] > 130) & (pixels[..., 0] < 60) & (pixels[..., 2] < 100)).sum())


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny TFVL run with TensorBoard on, validation at each of 2 steps, and a push to a fake Hub."""
    root = tmp_path_factory.mktemp("train_pictures")
    clip, world = write_tiny_clip(root / "clip"), root / "world"
    write_tiny_world(world)
    output_dir = root / "out"
    argv = base_argv(clip, world, output_dir) + ["--max_steps", "2", "--eval_steps", "1", "--logging_steps", "1"]
    argv += ["--report_to", "tensorboard", "--log_gallery_queries", "2", "--card_gallery_queries", "2"]
    argv += ["--push_to_hub", "true", "--hub_model_id", "someone/tiny-tfvl"]
    with recording_hub_uploads() as uploads:
        metrics = load_script("train").main(argv)
    return SimpleNamespace(root=root, clip=clip, world=world, out=output_dir, metrics=metrics, uploads=list(uploads))


def test_the_processor_beside_the_adapter_gives_the_inputs_the_run_evaluated(run):
    from peft import PeftConfig, PeftModel
    from transformers import AutoTokenizer, CLIPModel

    from peft_video.data import FrameSampling, VideoTextCollator, VideoTextDataset, load_manifest
    from peft_video.loading import load_frame_transform
    from peft_video.metrics import compute_retrieval_metrics

    data = load_manifest(run.world / "manifest.jsonl", split="test")
    for folder in (run.out, run.out / "best_adapter"):
        assert (folder / "processor_config.json").is_file() and (folder / "adapter_config.json").is_file()
        processor = VideoTextProcessor.from_pretrained(folder)  # the adapter's id alone
        # what train.py built to evaluate: sampling from the adapter config, transform and tokenizer of the base model
        sampling = FrameSampling.from_config(PeftConfig.from_pretrained(folder), image_size=32)
        assert processor.sampling == sampling and processor.max_text_length == 16
        dataset = VideoTextDataset(data, sampling, load_frame_transform(str(run.clip), 32), decode_timeout=None)
        batch = VideoTextCollator(AutoTokenizer.from_pretrained(run.clip), max_text_length=16)(
            [dataset[i] for i in range(len(dataset))]
        )
        inputs = processor(text=list(data["caption"]), videos=list(data["video"]))
        for key in ("pixel_values", "video_mask", "input_ids", "attention_mask"):
            assert torch.equal(inputs[key], batch[key]), key

    # the saved adapter, fed by its processor alone, reproduces the test metrics the run reported
    model = PeftModel.from_pretrained(CLIPModel.from_pretrained(run.clip), run.out).eval()
    with torch.no_grad():
        videos = model.get_video_features(pixel_values=inputs["pixel_values"], video_mask=inputs["video_mask"])
        texts = model.get_text_features(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
    similarity = torch.nn.functional.normalize(texts.pooler_output, dim=-1) @ (
        torch.nn.functional.normalize(videos.pooler_output, dim=-1).T
    )
    reproduced = compute_retrieval_metrics(similarity)
    for direction in ("text_to_video", "video_to_text"):
        for name in ("R@1", "R@5", "MnR"):
            assert reproduced[direction][name] == pytest.approx(run.metrics["test"][direction][name]), (
                direction,
                name,
            )


def test_each_validation_writes_a_gallery_of_its_worst_captions_to_tensorboard(run):
    import io

    from tensorboard.backend.event_processing.event_accumulator import IMAGES, EventAccumulator

    accumulator = EventAccumulator(str(run.out / "logs" / run.out.name), size_guidance={IMAGES: 0})  # run_name
    accumulator.Reload()
    assert GALLERY_TAG in accumulator.Tags()["images"]
    images = accumulator.Images(GALLERY_TAG)
    assert [event.step for event in images] == [1, 2]  # one per validation
    for event in images:
        picture = Image.open(io.BytesIO(event.encoded_image_string))
        assert picture.size == (event.width, event.height) and picture.width >= 720
        # 2 captions, each a sheet of its top 3 and (if not among them) its own video, framed in green
        assert picture.height > 2 * 3 * 72 and green_pixels(picture) > 300


def test_the_card_embeds_its_picture_and_the_push_uploads_it_with_the_processor(run):
    picture = run.out / "worst_queries.png"
    assert picture.is_file() and green_pixels(Image.open(picture)) > 300
    card = ModelCard((run.out / "README.md").read_text(encoding="utf-8"), ignore_metadata_errors=False)
    assert "](./worst_queries.png)" in card.text and "## Where it fails" in card.text
    assert "VideoTextProcessor.from_pretrained(adapter_id)" in card.text
    name, results = model_index_to_eval_results(card.data.to_dict()["model-index"])  # metadata still valid
    assert results and all(isinstance(r.metric_value, float) for r in results)

    (upload,) = run.uploads
    assert upload["repo_id"] == "someone/tiny-tfvl"
    files = upload["files"]
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md", "worst_queries.png"} <= files.keys()
    assert {"processor_config.json", "tokenizer.json", "tokenizer_config.json"} <= files.keys()
    assert files["worst_queries.png"] == picture.read_bytes()
    assert "](./worst_queries.png)" in files["README.md"].decode()


def test_no_pictures_when_asked_for_none(run, tmp_path):
    out = tmp_path / "quiet"
    argv = base_argv(run.clip, run.world, out) + [
        "--max_steps",
        "1",
        "--eval_steps",
        "1",
        "--report_to",
        "tensorboard",
    ]
    load_script("train").main(argv + ["--log_gallery_queries", "0", "--card_gallery_queries", "0"])
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(out / "logs" / out.name))
    accumulator.Reload()
    assert accumulator.Tags()["images"] == [] and accumulator.Tags()["scalars"]
    assert not (out / "worst_queries.png").exists() and "## Where it fails" not in (out / "README.md").read_text()
    with pytest.raises(ValueError, match="log_gallery_queries must be >= 0"):
        load_script("train").main(argv + ["--log_gallery_queries", "-1"])


def test_a_card_picture_must_be_a_file_beside_the_card(run, tmp_path):
    from peft import PeftConfig

    config = PeftConfig.from_pretrained(run.out)
    with pytest.raises(FileNotFoundError, match="'missing.png' is not in"):
        write_model_card(tmp_path, config, gallery="missing.png")
    for outside in ("../worst_queries.png", str(run.out / "worst_queries.png")):
        with pytest.raises(ValueError, match="gallery must be a file name inside the adapter folder"):
            write_model_card(run.out, config, gallery=outside)


def test_evaluate_writes_the_worst_queries_gallery_beside_its_result(run, tmp_path):
    evaluate = load_script("evaluate")
    argv = ["--data_dir", str(run.world), "--decode_timeout", "0", "--disable_tqdm", "true"]
    argv += [item for key, value in WORLD.items() for item in (f"--{key}", str(value))]
    adapter = tmp_path / "adapter"
    shutil.copytree(run.out / "best_adapter", adapter)
    result = evaluate.main(["--adapter_name_or_path", str(adapter), "--gallery_queries", "3"] + argv)
    gallery = adapter / "eval_test_worst.png"
    assert result["gallery"] == str(gallery) and json.loads((adapter / "eval_test.json").read_text())["gallery"]
    image = Image.open(gallery)
    assert image.width >= 720 and green_pixels(image) > 300

    elsewhere = tmp_path / "results" / "val.json"
    result = evaluate.main(
        ["--adapter_name_or_path", str(adapter), "--split", "val", "--output_file", str(elsewhere)] + argv
    )
    assert result["gallery"] == str(tmp_path / "results" / "val_worst.png") and Path(result["gallery"]).is_file()
    none = tmp_path / "none.json"
    result = evaluate.main(
        ["--adapter_name_or_path", str(adapter), "--output_file", str(none), "--gallery_queries", "0"] + argv
    )
    assert "gallery" not in result and not (tmp_path / "none_worst.png").exists()
