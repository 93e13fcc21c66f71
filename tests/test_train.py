"""examples/train.py end to end on a tiny offline world and a tiny random CLIP (CPU, offline, a few seconds a run):
exact resumption, artifacts (adapter, model card, metrics, Hub upload with a fake HfApi), baselines, and bad input
failing before any work."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file
from train_fixtures import (
    REPO,
    WORLD,
    base_argv,
    load_script,
    recording_hub_uploads,
    write_tiny_assets,
)

# 16 training pairs in batches of 4: 4 steps per epoch, so 6 steps cross an epoch boundary and a checkpoint at step 3
# sits in the middle of an epoch.
RESUME_ARGS = ["--max_steps", "6", "--save_steps", "3", "--eval_steps", "6", "--seed", "3"]


@pytest.fixture(scope="module")
def train():
    return load_script("train")


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return write_tiny_assets(tmp_path_factory.mktemp("train_assets"))


def argv_for(assets, output_dir: Path, method: str = "tfvl") -> list[str]:
    return base_argv(assets.clip, assets.world, output_dir, method=method)


def read_losses(output_dir: Path) -> list[float]:
    lines = (output_dir / "train_log.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines]


@pytest.fixture(scope="module")
def uninterrupted(train, assets):
    output_dir = assets.root / "uninterrupted"
    with recording_hub_uploads() as uploads:
        argv = argv_for(assets, output_dir) + RESUME_ARGS
        argv += ["--eval_before_training", "true", "--push_to_hub", "true", "--hub_model_id", "someone/tiny-tfvl"]
        metrics = train.main(argv)
    return SimpleNamespace(output_dir=output_dir, metrics=metrics, uploads=list(uploads))


def test_run_saves_adapter_card_metrics_and_pushes(uninterrupted):
    out, metrics = uninterrupted.output_dir, uninterrupted.metrics
    for name in ("adapter_config.json", "adapter_model.safetensors", "README.md", "metrics.json", "best_adapter"):
        assert (out / name).exists(), name
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["test"]["text_to_video"]["num_queries"] == 8
    assert saved["selection"]["split"] == "val" and saved["selection"]["best_step"] == 6
    assert saved["global_batch_size"] == 4 and saved["steps"] == 6
    # the zero-shot baseline was evaluated before training, on validation and test
    assert set(saved["zero_shot"]) == {"validation", "test"}
    assert json.loads((out / "adapter_config.json").read_text())["num_frames"] == 4
    card = (out / "README.md").read_text()
    assert "peft_video" in card and "text-to-video-retrieval" in card
    assert "Global batch size" in card and f"{metrics['test']['text_to_video']['R@1']}" in card
    assert len(read_losses(out)) == 6 and all(torch.isfinite(torch.tensor(read_losses(out))))
    # --push_to_hub: the adapter and its card went to the repository named by hub_model_id
    (upload,) = uninterrupted.uploads
    assert upload["repo_id"] == "someone/tiny-tfvl"
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md"} <= set(upload["files"])
    assert "peft_video" in upload["readme"] and "model-index" in upload["readme"]


def test_killed_and_resumed_run_reproduces_the_uninterrupted_losses(train, assets, uninterrupted):
    out = assets.root / "interrupted"
    # "killed" after step 5: the last checkpoint is step 3, so steps 4 and 5 are lost and redone
    assert train.main(argv_for(assets, out) + RESUME_ARGS + ["--stop_after_steps", "5"]) == {"stopped_at": 5}
    assert [p.name for p in sorted((out / "checkpoints").iterdir())] == ["checkpoint_3"]
    checkpoint_weights = load_file(out / "checkpoints" / "checkpoint_3" / "model.safetensors")
    assert checkpoint_weights and all("video_adapter" in k for k in checkpoint_weights), (
        "checkpoint holds base weights"
    )
    assert len(read_losses(out)) == 5

    # a fresh start in a folder that holds checkpoints is refused (nothing is overwritten by accident)
    with pytest.raises(FileExistsError, match="resume_from_checkpoint"):
        train.main(argv_for(assets, out) + RESUME_ARGS)

    train.main(argv_for(assets, out) + RESUME_ARGS + ["--resume_from_checkpoint", "last"])
    expected, resumed = read_losses(uninterrupted.output_dir), read_losses(out)
    assert len(resumed) == 6
    torch.testing.assert_close(torch.tensor(resumed), torch.tensor(expected), rtol=0, atol=1e-6)
    final = load_file(out / "adapter_model.safetensors")
    reference = load_file(uninterrupted.output_dir / "adapter_model.safetensors")
    assert final.keys() == reference.keys()
    for key in final:
        torch.testing.assert_close(final[key], reference[key], rtol=0, atol=1e-6)


def test_resume_refuses_a_checkpoint_of_another_method_or_base_model(train, assets, uninterrupted):
    checkpoint = str(uninterrupted.output_dir / "checkpoints" / "checkpoint_6")
    out = assets.root / "other"
    with pytest.raises(ValueError, match="method: checkpoint 'tfvl' vs this run 'full_finetune'"):
        train.main(
            argv_for(assets, out, method="full_finetune") + RESUME_ARGS + ["--resume_from_checkpoint", checkpoint]
        )
    other_clip = assets.root / "other_clip"
    shutil.copytree(assets.clip, other_clip, dirs_exist_ok=True)
    argv = argv_for(assets, out) + RESUME_ARGS + ["--resume_from_checkpoint", checkpoint]
    argv += ["--model_name_or_path", str(other_clip)]
    with pytest.raises(ValueError, match="base_model: checkpoint"):
        train.main(argv)


def test_baselines_zero_shot_and_full_finetune(train, assets):
    out = assets.root / "zero_shot"
    metrics = train.main(argv_for(assets, out, method="zero_shot"))
    assert json.loads((out / "metrics.json").read_text())["test"] == metrics["test"]
    assert metrics["parameters"]["trainable"] == 0

    out = assets.root / "full_finetune"
    argv = argv_for(assets, out, method="full_finetune") + ["--max_steps", "2", "--eval_steps", "2"]
    argv += ["--gradient_checkpointing", "true", "--report_to", "tensorboard", "--logging_steps", "1"]
    metrics = train.main(argv)
    assert list((out / "logs").rglob("events.out.tfevents.*")), "no TensorBoard event file"
    assert metrics["parameters"]["trainable"] == metrics["parameters"]["total"] - 1  # all but logit_scale
    from transformers import CLIPModel

    tuned, original = CLIPModel.from_pretrained(out), CLIPModel.from_pretrained(assets.clip)
    changed = [n for n, p in tuned.named_parameters() if not torch.equal(p, original.state_dict()[n])]
    assert changed and "logit_scale" not in changed
    # the saved folder stands alone (tokenizer included): evaluate.py scores it with the numbers training reported
    argv = ["--adapter_name_or_path", str(out), "--num_frames", "4", "--max_text_length", "16"]
    argv += ["--data_dir", str(assets.world), "--decode_timeout", "0", "--disable_tqdm", "true"]
    argv += [f"--{key}={value}" for key, value in WORLD.items()]
    evaluated = load_script("evaluate").main(argv)
    assert evaluated["method"] == "full_finetune"
    assert evaluated["metrics"]["text_to_video"] == pytest.approx(metrics["test"]["text_to_video"])


BAD_CONFIGURATIONS = [
    (["--method", "tfvll"], r"unknown method 'tfvll'; known methods: \[.*'tfvl'.*did you mean 'tfvl'"),
    (["--method_config", '{"text_temp_tokens": 3}'], r"TFVLConfig has no field\(s\) \['text_temp_tokens'\]"),
    (["--dataset", "msrvtt"], r"unknown dataset 'msrvtt'; known datasets"),
    (["--learning_rat", "1e-3"], r"unknown command-line flag\(s\) 'learning_rat' \(did you mean 'learning_rate'"),
    (["--method", "zero_shot", "--method_config", '{"num_frames": 4}'], "baseline"),
    (["--validation_split", "test"], "never see the test split"),
]


@pytest.mark.parametrize(("extra", "match"), BAD_CONFIGURATIONS)
def test_bad_configuration_fails_before_any_work(train, assets, tmp_path, extra, match):
    with pytest.raises(ValueError, match=match):
        train.main(argv_for(assets, tmp_path / "out") + extra)
    assert not (tmp_path / "out").exists()


def test_unknown_field_in_config_file(train, assets, tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("method: tfvl\nmax_step: 10\n")
    with pytest.raises(ValueError, match=r"bad.yaml: unknown field\(s\) 'max_step' \(did you mean 'max_steps'"):
        train.main(["--config", str(config)])


def test_empty_split_fails_before_the_model_loads(train, assets, tmp_path):
    manifest = tmp_path / "manifest.jsonl"
    rows = [json.loads(line) for line in (assets.world / "manifest.jsonl").read_text().splitlines()]
    video_dir = assets.world.resolve()
    lines = [json.dumps({**row, "video": str(video_dir / row["video"])}) for row in rows if row["split"] != "val"]
    manifest.write_text("\n".join(lines) + "\n")
    argv = argv_for(assets, tmp_path / "out") + ["--dataset", "manifest", "--manifest", str(manifest)]
    argv += ["--model_name_or_path", str(tmp_path / "no_such_model")]  # never reached: the split fails first
    with pytest.raises(ValueError, match=r"validation split 'val' of .*manifest.jsonl is empty"):
        train.main(argv)


def test_config_file_values_and_command_line_overrides(tmp_path):
    load_script("train")
    from arguments import parse_args

    train_module = load_script("train")
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"method": "tfvl", "learning_rate": 0.5, "method_config": {"text_temp": False}}))
    model_args, _, train_args = parse_args(
        train_module.ALL_ARGUMENTS,
        ["--config", str(config), "--learning_rate", "0.25", "--method_config", '{"image_temp_layers": [-1]}'],
    )
    assert train_args.learning_rate == 0.25
    assert model_args.method_config == {"text_temp": False, "image_temp_layers": [-1]}


def test_demo_config_runs_a_few_steps(train, assets, tmp_path):
    out = tmp_path / "demo"
    argv = ["--config", str(REPO / "examples" / "configs" / "demo_tfvl.yaml"), "--output_dir", str(out)]
    argv += ["--data_dir", str(assets.world), "--max_steps", "3", "--eval_steps", "3", "--report_to", "none"]
    argv += ["--world_num_train", "16", "--world_num_val", "8", "--world_num_test", "8", "--world_num_frames", "4"]
    argv += ["--num_frames", "4", "--per_device_train_batch_size", "4", "--disable_tqdm", "true"]
    metrics = train.main(argv)
    assert metrics["steps"] == 3 and (out / "adapter_model.safetensors").is_file()
    assert (out / "README.md").is_file() and (out / "metrics.json").is_file()


def test_parameter_groups_split_adapter_and_other_trainable_tensors(clip):
    from peft import get_peft_model

    from peft_video import TFVLConfig
    from peft_video.optimization import parameter_groups

    model = get_peft_model(clip, TFVLConfig(num_frames=4, modules_to_save=["visual_projection"]))
    groups = parameter_groups(model, learning_rate=1e-3, other_learning_rate=1e-6, weight_decay=0.1)
    by_name = {g["name"]: g for g in groups}
    assert by_name["adapter"]["lr"] == 1e-3 and by_name["other"]["lr"] == 1e-6
    assert all(g["weight_decay"] == 0.0 for name, g in by_name.items() if name.endswith("no_decay"))
    grouped = [id(p) for g in groups for p in g["params"]]
    trainable = [id(p) for p in model.parameters() if p.requires_grad]
    assert sorted(grouped) == sorted(trainable)


def test_epoch_seeded_dataset_draws_depend_only_on_seed_epoch_and_index():
    from peft_video.data import EpochSeededDataset

    class Draws(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, index):
            return torch.rand(2)

    data = EpochSeededDataset(Draws(), seed=1)
    first = data[2]
    torch.rand(10)  # global RNG state moves on
    torch.testing.assert_close(data[2], first, rtol=0, atol=0)
    data.set_epoch(1)
    assert not torch.equal(data[2], first)


@pytest.mark.parametrize("config", sorted((REPO / "examples" / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_parses_and_names_a_valid_method_setup(train, config):
    from arguments import parse_args

    from peft_video.loading import BASELINES

    model_args, data_args, train_args = parse_args(train.ALL_ARGUMENTS, ["--config", str(config)])
    adapter_config = train.check_arguments(model_args, data_args, train_args)
    assert (adapter_config is None) == (model_args.method in BASELINES)
    if adapter_config is not None:
        assert adapter_config.num_frames == data_args.num_frames


@pytest.mark.parametrize("method", ["dgl", "prompt_cube"])
def test_other_methods_train_through_the_same_script(train, assets, tmp_path, method):
    argv = argv_for(assets, tmp_path / method, method=method) + ["--max_steps", "1", "--eval_steps", "1"]
    if method == "prompt_cube":  # num_frames (4) must be a multiple of num_prompts; trains on one chunk of 2
        argv += ["--method_config", '{"num_prompts": 2}', "--train_num_frames", "2"]
    metrics = train.main(argv)
    assert metrics["steps"] == 1 and (tmp_path / method / "adapter_model.safetensors").is_file()
    assert json.loads((tmp_path / method / "adapter_config.json").read_text())["peft_type"] == method.upper()


def test_missing_base_model_is_named(train, assets, tmp_path):
    argv = argv_for(assets, tmp_path / "out") + ["--model_name_or_path", str(tmp_path / "no_such_clip")]
    with pytest.raises(OSError, match=r"base model '.*no_such_clip' cannot be loaded as a CLIPModel"):
        train.main(argv)
    assert not (tmp_path / "out").exists()


def test_frame_transform_reads_a_local_preprocessor_config_like_the_image_processor(train):
    from transformers import CLIPImageProcessor

    from peft_video.data import ClipFrameTransform
    from peft_video.loading import load_frame_transform
    from peft_video.synthetic import TINY_CLIP_PATH

    expected = ClipFrameTransform.from_processor(CLIPImageProcessor.from_pretrained(TINY_CLIP_PATH), image_size=64)
    assert load_frame_transform(str(TINY_CLIP_PATH), 64) == expected


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--report_to", "wandb"], r"report_to: \['wandb'\] not installed"),
        (["--metric_for_best_model", "text_to_video/R@3"], "metric_for_best_model=.*a name looks like"),
        (["--metric_for_best_model", "subsets/mood/text_to_video/R@1", "--subset_columns", "mood"], "column 'mood'"),
    ],
)
def test_a_bad_setting_deletes_nothing_of_the_earlier_run(train, assets, uninterrupted, tmp_path, extra, match):
    out = tmp_path / "earlier"
    shutil.copytree(uninterrupted.output_dir, out)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    with pytest.raises(ValueError, match=match):
        train.main(argv_for(assets, out) + RESUME_ARGS + ["--overwrite_output_dir", "true"] + extra)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before


def test_base_model_id_names_the_hub_base_in_config_and_card_never_the_local_folder(train, assets, tmp_path):
    out = tmp_path / "with_id"
    argv = argv_for(assets, out) + ["--max_steps", "1", "--eval_steps", "1", "--base_model_id", "someone/tiny-clip"]
    train.main(argv)
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == "someone/tiny-clip"
    card = (out / "README.md").read_text()
    assert "base_model: someone/tiny-clip" in card and str(assets.clip) not in card
    # without the option the card names no base model at all (the base is a local folder)
    train.main(argv_for(assets, tmp_path / "without") + ["--max_steps", "1", "--eval_steps", "1"])
    card = (tmp_path / "without" / "README.md").read_text()
    assert "base_model:" not in card and str(assets.clip) not in card


def test_training_fields_take_transformers_names_where_transformers_has_the_option(train):
    import dataclasses

    from transformers import TrainingArguments

    theirs = {f.name for f in dataclasses.fields(TrainingArguments)}
    ours = {f.name for f in dataclasses.fields(train.TrainArguments)}
    # Ours alone: `overwrite_output_dir` and `logging_dir` are transformers 4's names (5 dropped them), the others have
    # no TrainingArguments counterpart (`eval_before_training` is the zero-shot baseline, not `eval_on_start`; the
    # gallery counts are pictures of retrieval results, which Trainer does not draw).
    specific = {"overwrite_output_dir", "logging_dir", "eval_before_training", "dsl_temperature", "license"}
    specific |= {"log_gallery_queries", "card_gallery_queries"}
    assert ours - theirs == specific | {"stop_after_steps"}


def test_selection_metric_names_are_checked_before_training_and_read_after(train):
    from peft_video.selection import ModelSelection

    def check(spec, **settings):
        ModelSelection.parse(spec).check(**settings)

    settings = {"columns": ["order", "pair"], "subset_columns": ["order"], "twin_column": "pair"}
    for name in (
        "text_to_video/R@1",
        "video_to_text/MnR",
        "subsets/order/text_to_video/R@5",
        "order/text_to_video/R@1",
        "twin_accuracy/accuracy",
        "twin_accuracy/per_kind/motion",
        "0.5*twin_accuracy + 0.5*text_to_video/R@1",
    ):
        check(name, **settings)
    for name, match in [
        ("text_to_video/R@3", "a name looks like"),
        ("test/R@1", "a name looks like"),
        ("subsets/mood/text_to_video/R@1", r"needs 'mood' in subset_columns"),
        ("twin_accuracy", "needs a twin_column"),
        ("text_to_video/R@1 + twin_accuracy", "needs a twin_column"),
    ]:
        with pytest.raises(ValueError, match=match):
            check(name, subset_columns=["order"])
    with pytest.raises(ValueError, match=r"needs the column 'order' \(subset_columns\); the split has \['video'\]"):
        check("subsets/order/text_to_video/R@1", columns=["video"], subset_columns=["order"])
    metrics = {"text_to_video": {"R@1": 40.0, "MnR": 3.5}, "twin_accuracy": {"accuracy": 75.0, "num_queries": 8}}
    assert ModelSelection.parse("twin_accuracy").value(metrics) == 75.0
    assert ModelSelection.parse("0.5*twin_accuracy + 0.5*text_to_video/R@1").value(metrics) == 57.5
    with pytest.raises(ValueError, match="video_to_text/R@1"):
        ModelSelection.parse("video_to_text/R@1").value(metrics)
    assert not ModelSelection.parse("subsets/x/video_to_text/MnR").greater_is_better
    assert train.TrainArguments(metric_for_best_model="text_to_video/MnR").greater_is_better is False
