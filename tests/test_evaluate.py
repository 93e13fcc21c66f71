"""examples/evaluate.py: adapters from a folder (base model from the adapter config or --base_model), every video and
caption encoded once, metrics equal to a direct computation, DSL beside the raw numbers, JSON output, clear errors."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from train_fixtures import WORLD, load_script, write_tiny_clip, write_tiny_world


@pytest.fixture(scope="module")
def evaluate():
    return load_script("evaluate")


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    from peft import get_peft_model
    from transformers import CLIPModel

    from peft_video import TFVLConfig

    root = tmp_path_factory.mktemp("evaluate_assets")
    clip_dir = write_tiny_clip(root / "clip")
    write_tiny_world(root / "world")
    torch.manual_seed(0)
    config = TFVLConfig(num_frames=4, max_text_length=16, text_temp_gate_init=0.5)
    model = get_peft_model(CLIPModel.from_pretrained(clip_dir), config)
    model.save_pretrained(root / "adapter")
    return SimpleNamespace(root=root, clip=clip_dir, world=root / "world", adapter=root / "adapter")


def data_argv(assets) -> list[str]:
    argv = ["--data_dir", str(assets.world), "--decode_timeout", "0", "--disable_tqdm", "true"]
    for key, value in WORLD.items():
        argv += [f"--{key}", str(value)]
    return argv


def direct_metrics(model, manifest: Path, split: str, num_frames: int, max_text_length: int, tokenizer):
    """The same numbers computed without the script: decode, embed, rank."""
    from peft_video.data import ClipFrameTransform, FrameSampling, VideoTextCollator, VideoTextDataset, load_manifest
    from peft_video.metrics import compute_retrieval_metrics

    data = load_manifest(manifest, split=split)
    dataset = VideoTextDataset(
        data, FrameSampling(num_frames=num_frames), ClipFrameTransform.for_image_size(32), decode_timeout=None
    )
    batch = VideoTextCollator(tokenizer, max_text_length=max_text_length)([dataset[i] for i in range(len(dataset))])
    with torch.no_grad():
        video = F.normalize(model.get_video_features(batch["pixel_values"], batch["video_mask"]).pooler_output, dim=-1)
        text = F.normalize(model.get_text_features(batch["input_ids"], batch["attention_mask"]).pooler_output, dim=-1)
    return compute_retrieval_metrics(text @ video.T)


def test_adapter_folder_metrics_match_a_direct_computation(evaluate, assets):
    from peft import PeftModel
    from transformers import AutoTokenizer, CLIPModel

    result = evaluate.main(
        ["--adapter_name_or_path", str(assets.adapter), "--dsl_temperature", "0.01"] + data_argv(assets)
    )
    saved = json.loads((assets.adapter / "eval_test.json").read_text())
    assert saved["metrics"] == json.loads(json.dumps(result["metrics"]))
    assert saved["method"] == "tfvl" and saved["base_model"] == str(assets.clip)
    assert "best-ranked of its own captions" in saved["protocol"]
    metrics = result["metrics"]
    for direction in ("text_to_video", "video_to_text"):
        assert set(metrics[direction]) == {"R@1", "R@5", "R@10", "MdR", "MnR", "num_queries"}
        # DSL is reported beside the raw numbers, never instead
        assert set(metrics["dsl"][direction]) == set(metrics[direction])
    assert metrics["num_videos"] == WORLD["world_num_test"]

    model = PeftModel.from_pretrained(CLIPModel.from_pretrained(assets.clip), assets.adapter).eval()
    tokenizer = AutoTokenizer.from_pretrained(assets.clip)
    expected = direct_metrics(model, assets.world / "manifest.jsonl", "test", 4, 16, tokenizer)
    for direction in ("text_to_video", "video_to_text"):
        for key, value in expected[direction].items():
            assert metrics[direction][key] == pytest.approx(value), (direction, key)


def test_multi_caption_split_encodes_each_video_once(evaluate, assets, tmp_path, monkeypatch):
    """Two captions per video: every video is embedded once, every caption once, and video->text takes the
    best-ranked caption of each video."""
    rows = [json.loads(line) for line in (assets.world / "manifest.jsonl").read_text().splitlines()]
    test_rows = [r for r in rows if r["split"] == "test"]
    lines = []
    for row in test_rows:
        video = str((assets.world / row["video"]).resolve())
        lines.append(json.dumps({**row, "video": video}))
        lines.append(json.dumps({**row, "video": video, "caption": row["caption"] + " again"}))
    manifest = tmp_path / "two_captions.jsonl"
    manifest.write_text("\n".join(lines) + "\n")

    from peft_video.peft_model import PeftModelForVideoTextRetrieval

    seen = {"videos": 0, "texts": 0}
    video_features = PeftModelForVideoTextRetrieval.get_video_features
    text_features = PeftModelForVideoTextRetrieval.get_text_features

    def count_videos(self, pixel_values, video_mask=None):
        seen["videos"] += pixel_values.shape[0]
        return video_features(self, pixel_values, video_mask)

    def count_texts(self, input_ids, attention_mask=None):
        seen["texts"] += input_ids.shape[0]
        return text_features(self, input_ids, attention_mask)

    monkeypatch.setattr(PeftModelForVideoTextRetrieval, "get_video_features", count_videos)
    monkeypatch.setattr(PeftModelForVideoTextRetrieval, "get_text_features", count_texts)
    argv = ["--adapter_name_or_path", str(assets.adapter), "--dataset", "manifest", "--manifest", str(manifest)]
    argv += [
        "--output_file",
        str(tmp_path / "out.json"),
        "--per_device_eval_batch_size",
        "3",
        "--disable_tqdm",
        "true",
    ]
    argv += ["--decode_timeout", "0"]
    metrics = evaluate.main(argv)["metrics"]
    assert seen == {"videos": len(test_rows), "texts": 2 * len(test_rows)}
    assert metrics["text_to_video"]["num_queries"] == 2 * len(test_rows)
    assert metrics["video_to_text"]["num_queries"] == len(test_rows)


def test_base_model_not_found_names_it_and_base_model_overrides(evaluate, assets, tmp_path):
    import shutil

    moved = tmp_path / "adapter"
    shutil.copytree(assets.adapter, moved)
    config_path = moved / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = str(tmp_path / "gone" / "clip")
    config_path.write_text(json.dumps(config))
    with pytest.raises(OSError, match=r"the base model of adapter .* cannot be found: .*gone/clip.*--base_model"):
        evaluate.main(["--adapter_name_or_path", str(moved)] + data_argv(assets))
    result = evaluate.main(
        ["--adapter_name_or_path", str(moved), "--base_model", str(assets.clip)] + data_argv(assets)
    )
    assert result["base_model"] == str(assets.clip)


def test_unknown_adapter_id_is_a_clear_error(evaluate, assets):
    with pytest.raises(OSError, match="neither a local folder with adapter_config.json nor a reachable Hub"):
        evaluate.main(["--adapter_name_or_path", "someone/no-such-adapter"] + data_argv(assets))


def test_zero_shot_baseline_of_a_base_model(evaluate, assets, tmp_path):
    out = tmp_path / "zero_shot.json"
    result = evaluate.main(
        ["--base_model", str(assets.clip), "--num_frames", "4", "--output_file", str(out)] + data_argv(assets)
    )
    assert result["method"] == "zero_shot" and json.loads(out.read_text())["metrics"] == result["metrics"]
    assert result["metrics"]["text_to_video"]["num_queries"] == WORLD["world_num_test"]


def test_an_unreadable_video_is_left_out_with_its_captions_and_counted(evaluate, assets, tmp_path):
    rows = [json.loads(line) for line in (assets.world / "manifest.jsonl").read_text().splitlines()]
    test_rows = [{**r, "video": str((assets.world / r["video"]).resolve())} for r in rows if r["split"] == "test"]
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    test_rows.append({**test_rows[0], "video": str(broken), "video_id": "broken", "caption": "a red circle"})
    manifest = tmp_path / "with_broken.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in test_rows))
    argv = ["--adapter_name_or_path", str(assets.adapter), "--dataset", "manifest", "--manifest", str(manifest)]
    argv += ["--output_file", str(tmp_path / "out.json"), "--decode_timeout", "0", "--disable_tqdm", "true"]
    metrics = evaluate.main(argv)["metrics"]
    assert metrics["failed_videos"] == 1
    assert metrics["num_videos"] == metrics["num_captions"] == len(test_rows) - 1
    assert metrics["text_to_video"]["num_queries"] == len(test_rows) - 1


def test_retrieval_metrics_from_embeddings_drop_invalid_videos_and_score_subsets():
    from peft_video.evaluation import retrieval_metrics_from_embeddings

    videos = F.normalize(torch.eye(3), dim=-1)
    texts = videos[[0, 1, 2, 2]]  # caption 3 is a second caption of video 2
    result = retrieval_metrics_from_embeddings(
        texts, videos, torch.tensor([0, 1, 2, 2]), video_valid=torch.tensor([True, False, True])
    )
    assert (result["num_videos"], result["num_captions"], result["failed_videos"]) == (2, 3, 1)
    assert result["text_to_video"]["R@1"] == 100.0 and result["video_to_text"]["num_queries"] == 2
    with pytest.raises(ValueError, match="no video of the split could be decoded"):
        retrieval_metrics_from_embeddings(
            texts, videos, torch.tensor([0, 1, 2, 2]), video_valid=torch.zeros(3, dtype=bool)
        )


def test_adapter_by_hub_id_from_an_offline_hub_cache(evaluate, assets, tmp_path, monkeypatch):
    """A Hub id resolves through the Hub cache (offline here) exactly like a folder."""
    import shutil

    import huggingface_hub.constants

    commit = "0" * 40
    repo = tmp_path / "hub" / "models--someone--tiny-tfvl"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.copyfile(assets.adapter / name, snapshot / name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    out = tmp_path / "hub_eval.json"
    by_id = evaluate.main(
        ["--adapter_name_or_path", "someone/tiny-tfvl", "--output_file", str(out)] + data_argv(assets)
    )
    by_folder = evaluate.main(
        ["--adapter_name_or_path", str(assets.adapter), "--output_file", str(tmp_path / "f.json")] + data_argv(assets)
    )
    assert by_id["model"] == "someone/tiny-tfvl" and by_id["metrics"] == by_folder["metrics"]
