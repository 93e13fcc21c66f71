"""transformers.Trainer trains a peft_video adapter with the library's collator as it is (remove_unused_columns left
at its default), evaluates it with retrieval metrics equal to the library's own evaluation, and saves the adapter
with its model card."""

from __future__ import annotations

import json

import pytest
import torch
from huggingface_hub import ModelCard
from train_fixtures import write_tiny_clip, write_tiny_world


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from peft import get_peft_model
    from transformers import AutoTokenizer, CLIPModel

    from peft_video import TFVLConfig
    from peft_video.data import ClipFrameTransform, FrameSampling, VideoTextDataset, load_manifest

    root = tmp_path_factory.mktemp("trainer")
    clip_dir = write_tiny_clip(root / "clip")
    manifest = write_tiny_world(root / "world")
    sampling, transform = FrameSampling(num_frames=4), ClipFrameTransform.for_image_size(32)
    rows = {split: load_manifest(manifest, split=split) for split in ("train", "val")}
    torch.manual_seed(0)
    model = get_peft_model(CLIPModel.from_pretrained(clip_dir), TFVLConfig(num_frames=4, max_text_length=16))
    return {
        "root": root,
        "model": model,
        "tokenizer": AutoTokenizer.from_pretrained(clip_dir),
        "sampling": sampling,
        "transform": transform,
        "rows": rows,
        "train": VideoTextDataset(rows["train"], sampling, transform, train=True, decode_timeout=None),
        "val": VideoTextDataset(rows["val"], sampling, transform, decode_timeout=None),
    }


def test_trainer_trains_evaluates_and_saves_an_adapter_with_its_card(setup):
    from transformers import Trainer, TrainingArguments

    from peft_video.evaluation import RetrievalEvaluator
    from peft_video.trainer_support import RetrievalMetrics, VideoTextTrainerCollator

    out = setup["root"] / "trainer_out"
    args = TrainingArguments(
        str(out), max_steps=3, per_device_train_batch_size=4, per_device_eval_batch_size=3, learning_rate=1e-2,
        eval_strategy="steps", eval_steps=3, metric_for_best_model="text_to_video/R@1", report_to="none",
        save_strategy="no", use_cpu=True, seed=0,
    )  # fmt: skip
    assert args.remove_unused_columns  # the default: the samples reach the collator whole anyway
    metrics = RetrievalMetrics(
        setup["rows"]["val"], subset_columns=["is_order_sensitive"], twin_column="order_pair_id"
    )
    collator = VideoTextTrainerCollator(setup["tokenizer"], max_text_length=16)
    trainer = Trainer(
        model=setup["model"], args=args, train_dataset=setup["train"], eval_dataset=setup["val"],
        data_collator=collator, compute_metrics=metrics, preprocess_logits_for_metrics=metrics.keep_embeddings,
    )  # fmt: skip
    batch = next(iter(trainer.get_train_dataloader()))
    assert set(batch) == {"input_ids", "attention_mask", "pixel_values", "video_mask", "return_loss"}
    before = {n: p.detach().clone() for n, p in setup["model"].named_parameters() if p.requires_grad}

    trainer.train()
    changed = [n for n, p in setup["model"].named_parameters() if p.requires_grad and not torch.equal(p, before[n])]
    assert changed and all("video_adapter" in n for n in changed)
    logged = trainer.evaluate()
    assert logged["eval_text_to_video/num_queries"] == len(setup["rows"]["val"])
    # the same numbers as the library's own evaluation (each video encoded once, sharded, each sample counted once)
    evaluate = RetrievalEvaluator(
        setup["sampling"], setup["transform"], setup["tokenizer"], max_text_length=16,
        subset_columns=["is_order_sensitive"], twin_column="order_pair_id",
    )  # fmt: skip
    expected = evaluate(setup["model"], setup["rows"]["val"])
    for direction in ("text_to_video", "video_to_text"):
        for key, value in expected[direction].items():
            assert logged[f"eval_{direction}/{key}"] == pytest.approx(value, abs=1e-4), (direction, key)
    assert logged["eval_twin_accuracy/accuracy"] == pytest.approx(expected["twin_accuracy"]["accuracy"], abs=1e-4)

    trainer.save_model(str(out / "adapter"))
    assert json.loads((out / "adapter" / "adapter_config.json").read_text())["peft_type"] == "TFVL"
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    card = ModelCard.load(out / "adapter" / "README.md")
    assert "tfvl" in card.data.tags and card.data.library_name == "peft" and "TFVL adapter" in card.text


def test_metrics_refuse_predictions_that_do_not_line_up_with_the_rows(setup):
    from transformers import EvalPrediction

    from peft_video.trainer_support import RetrievalMetrics

    metrics = RetrievalMetrics(setup["rows"]["val"])
    short = torch.randn(len(setup["rows"]["val"]) - 1, 16)
    with pytest.raises(ValueError, match="failed to load were dropped"):
        metrics(EvalPrediction(predictions=(short, short), label_ids=None))


def test_collator_names_the_files_of_a_batch_that_all_failed(setup):
    from peft_video.data import FailedSample
    from peft_video.trainer_support import VideoTextTrainerCollator

    collator = VideoTextTrainerCollator(setup["tokenizer"], max_text_length=16)
    with pytest.raises(RuntimeError, match="every sample of a batch failed to load: .*broken.mp4"):
        collator([FailedSample("broken.mp4", "not a video")])
