"""peft_video.hub.write_model_card: template, front matter, merging with an existing README, and peft's own rewrite."""

from __future__ import annotations

import ast
import fnmatch
import importlib
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from huggingface_hub import ModelCard
from huggingface_hub.errors import EntryNotFoundError
from peft import LoraConfig, PeftModel
from peft.utils import PeftType

import peft_video
from peft_video import TFVLConfig
from peft_video.hub import model_card_tags, push_adapter_to_hub, write_model_card
from peft_video.hub.model_card import (
    BEGIN_MARKER,
    END_MARKER,
    FRAMEWORK_HEADING,
    load_template,
    split_front_matter,
)
from peft_video.metrics import compute_retrieval_metrics
from peft_video.testing import make_clip, tiny_clip_config

REPO_ROOT = Path(__file__).resolve().parents[1]
BASE = "openai/clip-vit-base-patch32"
TRAINING = {"dataset": "msrvtt", "steps": 5000, "global_batch_size": 128, "learning_rate": 1e-3}


def tfvl_config(**overrides) -> TFVLConfig:
    config = TFVLConfig(num_frames=12, image_size=224, **overrides)
    config.base_model_name_or_path = BASE
    return config


def video_config(peft_type: str, **fields) -> SimpleNamespace:
    """A stand-in with the fields the card reads, for methods whose config class may not exist yet."""
    values = dict(
        peft_type=peft_type,
        num_frames=8,
        frame_sampling="segments",
        sampling_fps=None,
        frame_chunk_size=None,
        image_size=224,
        max_text_length=32,
        base_model_name_or_path=BASE,
    )
    values.update(fields)
    return SimpleNamespace(**values)


def retrieval_results(dataset: str = "msrvtt", r1: float = 44.5) -> dict:
    # A small real result, so that the card is filled from what compute_retrieval_metrics actually returns.
    similarity = [[0.9, 0.1, 0.0], [0.2, 0.8, 0.1], [0.7, 0.3, 0.2], [0.1, 0.2, 0.3]]
    results = compute_retrieval_metrics(similarity, [0, 1, 0, 2])
    results["text_to_video"]["R@1"] = r1  # a distinctive value to find in the card
    results["dataset"] = dataset
    return results


def read_card(folder: Path) -> tuple[dict, str]:
    return split_front_matter((folder / "README.md").read_text(encoding="utf-8"))


def model_index_values(front: dict) -> dict[tuple[str, str, str], float]:
    out = {}
    for result in front["model-index"][0]["results"]:
        for metric in result["metrics"]:
            out[(result["task"]["type"], result["dataset"]["type"], metric["type"])] = metric["value"]
    return out


# ----------------------------------------------------------------------------------------------------------------
# The template
# ----------------------------------------------------------------------------------------------------------------
def test_packaged_template_is_the_model_cards_template():
    canonical = (REPO_ROOT / "model_cards" / "adapter_card.md").read_text(encoding="utf-8")
    packaged = (REPO_ROOT / "peft_video" / "hub" / "adapter_card.md").read_text(encoding="utf-8")
    assert packaged == canonical, "run: cp model_cards/adapter_card.md peft_video/hub/adapter_card.md"
    assert load_template() == canonical  # found through importlib.resources, as from an installed wheel


def test_pyproject_ships_the_template_as_package_data():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    package_data = pyproject["tool"]["setuptools"]["package-data"]
    patterns = [*package_data.get("*", []), *package_data.get("peft_video.hub", [])]
    assert any(fnmatch.fnmatch("adapter_card.md", pattern) for pattern in patterns), package_data


# ----------------------------------------------------------------------------------------------------------------
# A fresh card
# ----------------------------------------------------------------------------------------------------------------
def test_fresh_card_front_matter_and_sections(tmp_path):
    metrics = retrieval_results()
    write_model_card(tmp_path, tfvl_config(), base_model=None, training=TRAINING, metrics=metrics)
    front, body = read_card(tmp_path)

    assert front["library_name"] == "peft"
    assert front["base_model"] == BASE  # taken from config.base_model_name_or_path
    assert front["tags"] == ["peft_video", "tfvl", "text-video-retrieval"]
    assert front["datasets"] == ["msrvtt"]
    values = model_index_values(front)
    assert values[("text-to-video-retrieval", "msrvtt", "recall_at_1")] == 44.5
    assert values[("video-to-text-retrieval", "msrvtt", "recall_at_1")] == round(metrics["video_to_text"]["R@1"], 4)
    assert values[("video-to-text-retrieval", "msrvtt", "median_rank")] == metrics["video_to_text"]["MdR"]
    assert {key[0] for key in values} == {"text-to-video-retrieval", "video-to-text-retrieval"}

    # The Hub's own parser (the one peft uses) reads the same model-index back.
    card = ModelCard.load(tmp_path / "README.md")
    assert {r.task_type for r in card.data.eval_results} == {"text-to-video-retrieval", "video-to-text-retrieval"}

    # Training setup: frames, sampling, resolution, steps, batch.
    for row in (
        "| Frames per video (T) | 12 |",
        "| Resolution | 224 × 224 px |",
        "| Optimizer steps | 5000 |",
        "| Global batch size (all processes, after gradient accumulation) | 128 |",
        "| Learning rate | 0.001 |",
        "| Training data | msrvtt |",
    ):
        assert row in body
    assert "`segments`" in body
    assert "| text→video | 44.50 |" in body
    assert "10.1109/tnnls.2025.3605657" in body
    assert body.count(BEGIN_MARKER) == 1 and body.count(END_MARKER) == 1
    assert f"- peft_video {peft_video.__version__}" in body
    assert "${" not in body and "$" not in "".join(str(v) for v in front.values())


def test_usage_snippet_imports_peft_video_first_and_parses(tmp_path):
    write_model_card(tmp_path, tfvl_config(), base_model=BASE, training={"hub_model_id": "user/clip-tfvl-msrvtt"})
    _, body = read_card(tmp_path)
    snippet = re.search(r"```python\n(.*?)```", body, re.DOTALL).group(1)
    tree = ast.parse(snippet)
    imports = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert isinstance(imports[0], ast.Import) and imports[0].names[0].name == "peft_video"
    assert "PeftModel.from_pretrained(CLIPModel.from_pretrained(base_id), adapter_id)" in snippet
    assert f'base_id, adapter_id = "{BASE}", "user/clip-tfvl-msrvtt"' in snippet
    # Every name the snippet imports from peft_video exists.
    for node in imports:
        if isinstance(node, ast.ImportFrom) and node.module.startswith("peft_video"):
            module = importlib.import_module(node.module)  # a missing module of ours is a failure, not a skip
            for alias in node.names:
                assert hasattr(module, alias.name), f"{node.module}.{alias.name} used by the card does not exist"


@pytest.mark.parametrize(
    ("peft_type", "tag", "reference"),
    [
        ("TFVL", "tfvl", "10.1109/tnnls.2025.3605657"),
        ("DGL", "dgl", "2401.10588"),
        ("PROMPT_CUBE", "prompt_cube", "2308.07648"),
    ],
)
def test_each_method_gets_its_tag_and_citation(tmp_path, peft_type, tag, reference):
    config = video_config(peft_type)
    write_model_card(tmp_path, config, base_model=None)
    front, body = read_card(tmp_path)
    assert front["tags"] == ["peft_video", tag, "text-video-retrieval"]
    assert model_card_tags(config) == ["peft_video", tag, "text-video-retrieval"]
    assert reference in body
    assert "model-index" not in front  # no metrics, no invented results
    assert "No evaluation results were recorded" in body


def test_tags_from_an_enum_peft_type_and_an_unregistered_method_named(tmp_path):
    assert model_card_tags(tfvl_config()) == ["peft_video", "tfvl", "text-video-retrieval"]
    assert isinstance(tfvl_config().peft_type, PeftType)
    with pytest.raises(KeyError, match="no peft_video method 'NEW_METHOD' is registered"):
        write_model_card(tmp_path, video_config("NEW_METHOD"), base_model=None)


def test_sampling_and_missing_base_model_are_described(tmp_path):
    config = video_config(
        "PROMPT_CUBE", frame_sampling="fps", sampling_fps=2.0, base_model_name_or_path=None, image_size=None
    )
    write_model_card(tmp_path, config, base_model=None)
    front, body = read_card(tmp_path)
    assert "base_model" not in front
    assert "`fps`: 2.0 frames per second" in body
    assert "| Resolution | the base model's |" in body
    assert '"<base CLIP model id or folder>"' in body


def test_dsl_rows_are_beside_raw_rows_and_not_in_model_index(tmp_path):
    metrics = compute_retrieval_metrics([[0.5, 0.1, 0.55], [0.1, 0.5, 0.55], [0.1, 0.1, 0.56]], dsl_temperature=0.01)
    metrics["dataset"] = "synthetic"
    write_model_card(tmp_path, tfvl_config(), base_model=BASE, metrics=metrics)
    front, body = read_card(tmp_path)
    assert "| text→video |" in body and "| text→video, dual softmax (transductive) |" in body
    assert len(front["model-index"][0]["results"]) == 2
    assert all("dual" not in m["name"] for r in front["model-index"][0]["results"] for m in r["metrics"])


# ----------------------------------------------------------------------------------------------------------------
# Merging with a README that already exists
# ----------------------------------------------------------------------------------------------------------------
USER_README = """---
license: mit
language: en
tags:
- my-experiment
datasets:
- my-private-set
---

# Notes written by the user

Trained on a Tuesday.
"""


def test_existing_readme_front_matter_and_text_are_kept(tmp_path):
    (tmp_path / "README.md").write_text(USER_README, encoding="utf-8")
    write_model_card(tmp_path, tfvl_config(), base_model=BASE, training=TRAINING, metrics=retrieval_results())
    front, body = read_card(tmp_path)
    assert front["license"] == "mit" and front["language"] == "en"
    assert front["tags"] == ["my-experiment", "peft_video", "tfvl", "text-video-retrieval"]
    assert front["datasets"] == ["my-private-set", "msrvtt"]
    assert "Trained on a Tuesday." in body
    assert body.index(BEGIN_MARKER) < body.index("Trained on a Tuesday.")


def test_rewriting_is_idempotent_and_replaces_our_block_only(tmp_path):
    (tmp_path / "README.md").write_text(USER_README, encoding="utf-8")
    write_model_card(tmp_path, tfvl_config(), base_model=BASE, training=TRAINING, metrics=retrieval_results())
    first = (tmp_path / "README.md").read_text(encoding="utf-8")
    write_model_card(tmp_path, tfvl_config(), base_model=BASE, training=TRAINING, metrics=retrieval_results())
    assert (tmp_path / "README.md").read_text(encoding="utf-8") == first

    # New results on the same dataset replace the old ones; results on another dataset are kept beside them.
    write_model_card(tmp_path, tfvl_config(), base_model=BASE, training=TRAINING, metrics=retrieval_results(r1=50.0))
    write_model_card(tmp_path, tfvl_config(), base_model=BASE, metrics=retrieval_results("didemo", r1=30.0))
    front, body = read_card(tmp_path)
    values = model_index_values(front)
    assert values[("text-to-video-retrieval", "msrvtt", "recall_at_1")] == 50.0
    assert values[("text-to-video-retrieval", "didemo", "recall_at_1")] == 30.0
    assert len(front["model-index"][0]["results"]) == 4
    assert body.count(BEGIN_MARKER) == 1 and body.count("Trained on a Tuesday.") == 1
    assert "| text→video | 30.00 |" in body and "| text→video | 50.00 |" not in body  # the body shows the latest
    assert body.count(FRAMEWORK_HEADING) == 1


def test_readme_without_front_matter_is_kept(tmp_path):
    (tmp_path / "README.md").write_text("Just some words.\n", encoding="utf-8")
    write_model_card(tmp_path, tfvl_config(), base_model=BASE)
    front, body = read_card(tmp_path)
    assert front["library_name"] == "peft" and "Just some words." in body


# ----------------------------------------------------------------------------------------------------------------
# peft's own create_or_update_model_card runs after ours in save_pretrained and rewrites `tags`
# ----------------------------------------------------------------------------------------------------------------
VIDEO_CONFIG = video_config("TFVL")


class _PeftModelWithVideoCard(PeftModel):
    """The hook PeftModelForVideoTextRetrieval uses, on a LoRA model so that only peft's real card code runs."""

    def _get_peft_specific_model_tags(self):
        return [*super()._get_peft_specific_model_tags(), *model_card_tags(VIDEO_CONFIG)]

    def create_or_update_model_card(self, output_dir: str) -> None:
        write_model_card(output_dir, VIDEO_CONFIG, base_model=BASE, training=TRAINING, metrics=retrieval_results())
        super().create_or_update_model_card(output_dir)


class _PeftModelWithoutTagHook(_PeftModelWithVideoCard):
    def _get_peft_specific_model_tags(self):
        return PeftModel._get_peft_specific_model_tags(self)


def _lora_clip(cls):
    # save_pretrained(..., save_embedding_layers=False) below: with "auto", peft would look the base model id up on
    # the Hub to compare vocabularies, which has nothing to do with the card.
    clip = make_clip(tiny_clip_config())
    # What from_pretrained records; peft copies it into `base_model` and a `base_model:adapter:` tag.
    clip.config._name_or_path = BASE
    clip.name_or_path = BASE
    return cls(clip, LoraConfig(target_modules=["q_proj"], r=2))


def test_peft_card_writing_keeps_our_tags_and_content(tmp_path):
    (tmp_path / "README.md").write_text(USER_README, encoding="utf-8")
    model = _lora_clip(_PeftModelWithVideoCard)
    model.save_pretrained(tmp_path, save_embedding_layers=False)
    front, body = read_card(tmp_path)
    assert {"peft_video", "tfvl", "text-video-retrieval", "transformers"} <= set(front["tags"])
    assert front["library_name"] == "peft" and front["base_model"] == BASE
    assert front["license"] == "mit"  # peft keeps other keys, and so did we
    assert model_index_values(front)[("text-to-video-retrieval", "msrvtt", "recall_at_1")] == 44.5
    assert body.count(FRAMEWORK_HEADING) == 1
    assert "- PEFT " in body and f"- peft_video {peft_video.__version__}" in body
    assert "Trained on a Tuesday." in body and body.count(BEGIN_MARKER) == 1

    model.save_pretrained(tmp_path, save_embedding_layers=False)  # saving again changes nothing
    assert read_card(tmp_path) == (front, body)


def test_without_the_tag_hook_peft_drops_our_tags(tmp_path):
    # Why PeftModelForVideoTextRetrieval must override _get_peft_specific_model_tags: peft replaces `tags`.
    _lora_clip(_PeftModelWithoutTagHook).save_pretrained(tmp_path, save_embedding_layers=False)
    front, _ = read_card(tmp_path)
    assert "peft_video" not in front["tags"]


# ----------------------------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"metrics": {"text_to_video": {"R@1": 1.0}, "dataset": "x"}},
            r"missing or not a mapping: \['video_to_text'\]",
        ),
        ({"metrics": {"text_to_video": {}, "video_to_text": {}}}, 'needs a "dataset" entry'),
        ({"metrics": {"text_to_video": {"R@1": "high"}, "video_to_text": {}, "dataset": "x"}}, "must be a number"),
        ({"training": [("steps", 10)]}, "training must be a mapping"),
    ],
)
def test_bad_arguments_raise_clear_errors(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        write_model_card(tmp_path, tfvl_config(), base_model=BASE, **kwargs)
    assert not (tmp_path / "README.md").exists()


def test_config_without_peft_type_and_broken_readme(tmp_path):
    with pytest.raises(ValueError, match="has no peft_type"):
        write_model_card(tmp_path, SimpleNamespace(num_frames=4), base_model=BASE)
    (tmp_path / "README.md").write_text("---\ntags: [unclosed\n---\nbody\n", encoding="utf-8")
    with pytest.raises(ValueError, match="README.md: the YAML front matter cannot be parsed"):
        write_model_card(tmp_path, tfvl_config(), base_model=BASE)
    (tmp_path / "README.md").write_text("---\n- a list\n---\nbody\n", encoding="utf-8")
    with pytest.raises(ValueError, match="must be a mapping; got list"):
        write_model_card(tmp_path, tfvl_config(), base_model=BASE)


# ----------------------------------------------------------------------------------------------------------------
# Pushing: transformers' push_to_hub replaces the card; push_adapter_to_hub keeps it
# ----------------------------------------------------------------------------------------------------------------
class _FakeHubApi:
    """The HfApi calls push_adapter_to_hub makes, recorded, with an optional README already in the repository."""

    def __init__(self, tmp_path: Path, remote_readme: str | None = None):
        self.tmp_path = tmp_path
        self.remote_readme = remote_readme
        self.uploaded: dict[str, str] = {}
        self.calls: list[str] = []

    def create_repo(self, repo_id, **kwargs):
        self.calls.append("create_repo")
        return SimpleNamespace(repo_id=repo_id)

    def hf_hub_download(self, repo_id, filename, **kwargs):
        self.calls.append("hf_hub_download")
        if self.remote_readme is None:
            raise EntryNotFoundError(f"{filename} not in {repo_id}")
        path = self.tmp_path / "remote" / filename
        path.parent.mkdir(exist_ok=True)
        path.write_text(self.remote_readme, encoding="utf-8")
        return str(path)

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        self.calls.append("upload_folder")
        for file in Path(folder_path).iterdir():
            self.uploaded[file.name] = file.read_bytes().decode("utf-8", errors="replace")
        return SimpleNamespace(repo_id=repo_id, kwargs=kwargs)


@pytest.mark.parametrize("remote_readme", [None, USER_README])
def test_push_adapter_to_hub_uploads_our_card(tmp_path, remote_readme):
    api = _FakeHubApi(tmp_path, remote_readme)
    info = push_adapter_to_hub(
        _lora_clip(_PeftModelWithVideoCard), "user/clip-tfvl", api=api, save_embedding_layers=False
    )
    assert api.calls == ["create_repo", "hf_hub_download", "upload_folder"]
    assert info.kwargs["commit_message"] == "Upload peft_video adapter"
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md"} <= api.uploaded.keys()
    front, body = split_front_matter(api.uploaded["README.md"])
    assert {"peft_video", "tfvl"} <= set(front["tags"]) and front["library_name"] == "peft"
    assert BEGIN_MARKER in body
    if remote_readme is not None:
        assert front["license"] == "mit" and "Trained on a Tuesday." in body


def test_transformers_push_to_hub_replaces_the_card(tmp_path, monkeypatch):
    # Why push_adapter_to_hub exists. If this starts failing, transformers keeps the saved card and the override of
    # PeftModelForVideoTextRetrieval.push_to_hub could go.
    import transformers.utils.hub as transformers_hub

    class NoRemoteCard(ModelCard):
        @classmethod
        def load(cls, *args, **kwargs):
            raise EntryNotFoundError("no README on the Hub yet")

    uploaded = {}

    def capture(self, folder, repo_id, **kwargs):
        uploaded["README.md"] = (Path(folder) / "README.md").read_text(encoding="utf-8")

    monkeypatch.setattr(
        transformers_hub,
        "hf_api",
        lambda: SimpleNamespace(create_repo=lambda repo_id, **_: SimpleNamespace(repo_id=repo_id)),
    )
    monkeypatch.setattr(transformers_hub, "ModelCard", NoRemoteCard)
    monkeypatch.setattr(_PeftModelWithVideoCard, "_upload_modified_files", capture, raising=False)
    model = _lora_clip(_PeftModelWithVideoCard)
    monkeypatch.setattr(
        model,
        "save_pretrained",
        lambda folder, **kw: PeftModel.save_pretrained(model, folder, save_embedding_layers=False),
    )
    model.push_to_hub("user/clip-tfvl")
    assert BEGIN_MARKER not in uploaded["README.md"]
    assert split_front_matter(uploaded["README.md"])[0]["library_name"] == "transformers"


def test_usage_snippet_runs_on_a_local_base_model(tmp_path, monkeypatch):
    # The card's snippet, verbatim except for the caption, on a tiny CLIP saved with a processor, a TFVL adapter saved
    # with save_pretrained, and a video written with PyAV.
    import torch
    from peft import get_peft_model
    from transformers import CLIPImageProcessor, CLIPModel, CLIPProcessor
    from video_fixtures import write_video

    from peft_video.synthetic.tiny_clip import tiny_clip_config as world_clip_config
    from peft_video.synthetic.tokenizer import build_tokenizer

    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    CLIPModel(world_clip_config(image_size=32)).save_pretrained("base")
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=image_processor, tokenizer=build_tokenizer()).save_pretrained("base")
    model = get_peft_model(CLIPModel.from_pretrained("base"), TFVLConfig(num_frames=4))
    model.save_pretrained("adapter")
    write_model_card("adapter", model.peft_config["default"], base_model="base", training={"hub_model_id": "adapter"})
    write_video("video.mp4", num_frames=10)

    _, body = read_card(Path("adapter"))
    snippet = re.search(r"```python\n(.*?)```", body, re.DOTALL).group(1)
    namespace: dict = {}
    exec(compile(snippet.replace('"a person is cooking"', '"a red circle"'), "model_card_snippet", "exec"), namespace)
    assert namespace["similarity"].shape == (1, 1)
    assert torch.isfinite(namespace["similarity"]).all()
