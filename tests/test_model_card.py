"""The adapter's model card: one template, huggingface_hub's card classes, metadata the Hub can resolve (checked with
huggingface_hub's own parsers, offline), merging with a README that exists, peft's own card writing, and the upload."""

from __future__ import annotations

import ast
import importlib
import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from huggingface_hub import ModelCard
from huggingface_hub.errors import EntryNotFoundError
from huggingface_hub.repocard_data import model_index_to_eval_results
from huggingface_hub.utils import validate_repo_id
from peft import PeftModel, get_peft_model

from peft_video import TFVLConfig, video_methods
from peft_video.hub import hub_dataset_id, model_card_tags, push_adapter_to_hub, write_model_card
from peft_video.hub.model_card import BEGIN_MARKER, END_MARKER, HUB_DATASET_IDS, PIPELINE_TAG
from peft_video.metrics import compute_retrieval_metrics
from peft_video.testing import make_clip, tiny_clip_config

REPO_ROOT = Path(__file__).resolve().parents[1]
BASE = "openai/clip-vit-base-patch32"
TRAINING = {"Optimizer steps": 5000, "Global batch size": 128, "Learning rate": 1e-3}
# The Hub's pipeline tags that could describe a retrieval model (huggingface.js packages/tasks/src/pipelines.ts).
HUB_PIPELINE_TAGS = {"feature-extraction", "sentence-similarity", "zero-shot-image-classification", "text-retrieval"}


def tfvl_config(base: str | None = BASE, **overrides) -> TFVLConfig:
    config = TFVLConfig(num_frames=12, image_size=224, **overrides)
    config.base_model_name_or_path = base
    return config


def retrieval_results(r1: float = 44.5, **kwargs) -> dict:
    # A small real result, so that the card is filled from what compute_retrieval_metrics actually returns.
    results = compute_retrieval_metrics(
        [[0.9, 0.1, 0.0], [0.2, 0.8, 0.1], [0.7, 0.3, 0.2], [0.1, 0.2, 0.3]], [0, 1, 0, 2], **kwargs
    )
    results["text_to_video"]["R@1"] = r1  # a distinctive value to find in the card
    return results


def read_card(folder: Path) -> ModelCard:
    """The card as the Hub reads it: huggingface_hub's parser, with metadata errors raised, not ignored."""
    return ModelCard((folder / "README.md").read_text(encoding="utf-8"), ignore_metadata_errors=False)


def result_values(card: ModelCard) -> dict[tuple[str, str, str, str], float]:
    return {
        (r.task_type, r.dataset_type, r.dataset_split, r.metric_type): r.metric_value for r in card.data.eval_results
    }


def assert_valid_hub_metadata(card: ModelCard) -> None:
    """huggingface_hub's offline checks: repository ids, the model-index round trip, known pipeline tag."""
    data = card.data
    for repo_id in [data.base_model] * bool(data.base_model) + list(data.datasets or []):
        validate_repo_id(repo_id)
    for tag in data.tags:
        if tag.startswith("base_model:adapter:"):
            validate_repo_id(tag.removeprefix("base_model:adapter:"))
    name, results = model_index_to_eval_results(card.data.to_dict().get("model-index", [{"name": "x", "results": []}]))
    assert all(isinstance(r.metric_value, float) for r in results), name
    assert data.library_name == "peft" and data.pipeline_tag in HUB_PIPELINE_TAGS


def test_one_template_in_model_cards_shipped_by_the_package():
    packaged = REPO_ROOT / "peft_video" / "hub" / "adapter_card.md"
    assert packaged.is_symlink() and packaged.resolve() == (REPO_ROOT / "model_cards" / "adapter_card.md").resolve()
    tomllib = importlib.import_module("tomllib") if importlib.util.find_spec("tomllib") else None
    if tomllib is not None:  # Python >= 3.11: the package data pattern covers it (setuptools copies the link's target)
        package_data = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
        assert "*.md" in package_data["*"]


def test_fresh_card_metadata_is_valid_hub_metadata_and_the_text_holds_the_facts(tmp_path):
    metrics = retrieval_results()
    card = write_model_card(
        tmp_path, tfvl_config(), training=TRAINING, metrics=metrics, dataset="msrvtt", license="mit",
        adapter_id="user/clip-tfvl-msrvtt",
    )  # fmt: skip
    assert read_card(tmp_path).content == card.content
    data = read_card(tmp_path).data
    assert_valid_hub_metadata(read_card(tmp_path))
    assert (data.base_model, data.license, data.pipeline_tag) == (BASE, "mit", PIPELINE_TAG)
    assert data.tags == ["peft_video", "tfvl", "text-video-retrieval", f"base_model:adapter:{BASE}"]
    assert data.datasets == ["friedrichor/MSR-VTT"] and data.model_name == "user/clip-tfvl-msrvtt"
    values = result_values(read_card(tmp_path))
    assert values[("text-to-video-retrieval", "friedrichor/MSR-VTT", "test", "recall_at_1")] == 44.5
    assert values[("video-to-text-retrieval", "friedrichor/MSR-VTT", "test", "median_rank")] == float(
        metrics["video_to_text"]["MdR"]
    )
    text = read_card(tmp_path).text
    for row in ("| Frames per video (T) | 12 |", "| Resolution | 224 × 224 px |", "| Optimizer steps | 5000 |",
                "| Global batch size | 128 |", "| Learning rate | 0.001 |", "| text→video | 44.50 |"):  # fmt: skip
        assert row in text
    assert "10.1109/tnnls.2025.3605657" in text and f"# TFVL adapter for text-video retrieval on {BASE}" in text
    assert text.count(BEGIN_MARKER) == 1 and text.count(END_MARKER) == 1 and "{{" not in text


def test_a_local_base_model_never_reaches_the_card(tmp_path):
    local = tmp_path / "my_clip"
    local.mkdir()
    write_model_card(tmp_path / "adapter", tfvl_config(base=str(local)), metrics=retrieval_results(), dataset="mine")
    card = read_card(tmp_path / "adapter")
    assert_valid_hub_metadata(card)
    assert card.data.base_model is None and card.data.datasets is None
    assert str(local) not in card.content and not any(t.startswith("base_model:") for t in card.data.tags)
    assert '"<base CLIP model: Hub id or folder>"' in card.text
    # results on data with no Hub id: named in the text and in the model-index, not listed as a Hub dataset
    assert ("text-to-video-retrieval", "mine", "test", "recall_at_1") in result_values(card)


def test_dataset_ids_of_the_public_benchmarks():
    from peft_video.data import PUBLIC_DATASETS

    assert set(HUB_DATASET_IDS) <= set(PUBLIC_DATASETS)
    for name, repo_id in HUB_DATASET_IDS.items():
        validate_repo_id(repo_id)
        assert hub_dataset_id(name) == hub_dataset_id(name.upper()) == repo_id
    assert hub_dataset_id("lsmdc") is None and hub_dataset_id("peft_video offline world") is None
    assert hub_dataset_id("someone/my-videos") == "someone/my-videos"


def test_usage_snippet_imports_peft_video_first_and_names_what_exists(tmp_path):
    write_model_card(tmp_path, tfvl_config(), adapter_id="user/clip-tfvl-msrvtt")
    snippet = re.search(r"```python\n(.*?)```", read_card(tmp_path).text, re.DOTALL).group(1)
    tree = ast.parse(snippet)
    imports = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert isinstance(imports[0], ast.Import) and imports[0].names[0].name == "peft_video"
    assert f'base_id, adapter_id = "{BASE}", "user/clip-tfvl-msrvtt"' in snippet
    for node in imports:
        if isinstance(node, ast.ImportFrom) and node.module.startswith("peft_video"):
            module = importlib.import_module(node.module)
            assert all(hasattr(module, alias.name) for alias in node.names), node.module


@pytest.mark.parametrize("name", sorted(video_methods()))
def test_each_method_gets_its_tag_description_and_citation(tmp_path, name):
    method = video_methods()[name]
    config = next(iter(method.test_variants.values()))(4)  # a valid small config of the method
    config.base_model_name_or_path = BASE
    write_model_card(tmp_path, config)
    card = read_card(tmp_path)
    assert (
        model_card_tags(config)
        == card.data.tags
        == ["peft_video", name, "text-video-retrieval", f"base_model:adapter:{BASE}"]
    )
    assert method.citation in card.text and method.description in card.text and method.display_name in card.text
    assert not card.data.eval_results and "No evaluation results were recorded" in card.text


def test_dsl_rows_are_beside_raw_rows_and_not_in_the_metadata(tmp_path):
    write_model_card(tmp_path, tfvl_config(), metrics=retrieval_results(dsl_temperature=0.01), dataset="msrvtt")
    card = read_card(tmp_path)
    assert "| text→video |" in card.text and "| text→video, dual softmax |" in card.text
    assert len(card.data.eval_results) == 10 and not any("dual" in r.metric_name for r in card.data.eval_results)


USER_README = """---
license: mit
language: en
tags:
- my-experiment
datasets:
- someone/private-set
base_model: /home/me/clip
---

# Notes written by the user

Trained on a Tuesday.
"""


def test_an_existing_readme_is_merged_and_rewriting_is_idempotent(tmp_path):
    (tmp_path / "README.md").write_text(USER_README, encoding="utf-8")
    write_model_card(tmp_path, tfvl_config(), training=TRAINING, metrics=retrieval_results(), dataset="msrvtt")
    card = read_card(tmp_path)
    assert (card.data.license, card.data.language, card.data.base_model) == ("mit", "en", BASE)
    assert card.data.tags[0] == "my-experiment" and "tfvl" in card.data.tags
    assert card.data.datasets == ["someone/private-set", "friedrichor/MSR-VTT"]
    assert card.text.index(BEGIN_MARKER) < card.text.index("Trained on a Tuesday.")
    first = (tmp_path / "README.md").read_text()
    write_model_card(tmp_path, tfvl_config(), training=TRAINING, metrics=retrieval_results(), dataset="msrvtt")
    assert (tmp_path / "README.md").read_text() == first

    # new results on the same dataset and split replace the old ones; another dataset's are kept beside them
    write_model_card(tmp_path, tfvl_config(), metrics=retrieval_results(r1=50.0), dataset="msrvtt")
    write_model_card(tmp_path, tfvl_config(), metrics=retrieval_results(r1=30.0), dataset="didemo")
    card = read_card(tmp_path)
    values = result_values(card)
    assert values[("text-to-video-retrieval", "friedrichor/MSR-VTT", "test", "recall_at_1")] == 50.0
    assert values[("text-to-video-retrieval", "friedrichor/DiDeMo", "test", "recall_at_1")] == 30.0
    assert len(card.data.eval_results) == 20 and card.text.count("Trained on a Tuesday.") == 1
    assert "| text→video | 30.00 |" in card.text and "| text→video | 50.00 |" not in card.text


def test_a_local_base_model_written_by_someone_else_is_dropped_with_its_tag(tmp_path):
    (tmp_path / "README.md").write_text(USER_README.replace("- my-experiment", "- base_model:adapter:/home/me/clip"))
    write_model_card(tmp_path, tfvl_config(base=None))
    card = read_card(tmp_path)
    assert card.data.base_model is None and "/home/me/clip" not in card.content


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"metrics": {"text_to_video": {"R@1": 1.0}}, "dataset": "x"}, r"missing \['video_to_text'\]"),
        ({"metrics": {"text_to_video": {}, "video_to_text": {}}}, "pass dataset="),
        ({"metrics": {"text_to_video": {"R@1": "high"}, "video_to_text": {}}, "dataset": "x"}, "must be a number"),
        ({"training": [("steps", 10)]}, "training must be a mapping"),
    ],
)
def test_bad_arguments_raise_clear_errors(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        write_model_card(tmp_path, tfvl_config(), **kwargs)
    assert not (tmp_path / "README.md").exists()


def test_bad_config_and_broken_readme_are_named(tmp_path):
    with pytest.raises(ValueError, match="has no peft_type"):
        write_model_card(tmp_path, SimpleNamespace(num_frames=4))
    with pytest.raises(KeyError, match="no peft_video method 'NEW_METHOD' is registered"):
        write_model_card(tmp_path, SimpleNamespace(peft_type="NEW_METHOD"))
    for broken in ("---\ntags: [unclosed\n---\nbody\n", "---\n- a list\n---\nbody\n"):
        (tmp_path / "README.md").write_text(broken, encoding="utf-8")
        with pytest.raises(ValueError, match="README.md: the existing model card's metadata cannot be read"):
            write_model_card(tmp_path, tfvl_config())


# ----------------------------------------------------------------------------------------------------------------
# save_pretrained: peft's own create_or_update_model_card runs between our two writes
# ----------------------------------------------------------------------------------------------------------------
def tiny_adapter(tmp_path: Path, base_id: str | None = None):
    """A TFVL adapter on a tiny CLIP saved in (and loaded from) a local folder, as a user with a local base has."""
    from transformers import CLIPModel

    make_clip(tiny_clip_config()).save_pretrained(tmp_path / "base")
    model = get_peft_model(CLIPModel.from_pretrained(tmp_path / "base"), TFVLConfig(num_frames=4))
    if base_id is not None:
        model.peft_config["default"].base_model_name_or_path = base_id
    return model


def test_save_pretrained_card_survives_peft_and_names_no_local_folder(tmp_path):
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "README.md").write_text(USER_README, encoding="utf-8")
    model = tiny_adapter(tmp_path)
    model.save_pretrained(tmp_path / "adapter")
    card = read_card(tmp_path / "adapter")
    assert_valid_hub_metadata(card)
    assert {"peft_video", "tfvl", "text-video-retrieval", "transformers"} <= set(card.data.tags)
    assert card.data.base_model is None and str(tmp_path) not in card.content
    assert "- PEFT " in card.text and card.text.count(BEGIN_MARKER) == 1 and "Trained on a Tuesday." in card.text
    model.save_pretrained(tmp_path / "adapter")  # saving again changes nothing
    assert read_card(tmp_path / "adapter").content == card.content


def test_a_base_model_id_names_the_base_in_config_and_card(tmp_path):
    model = tiny_adapter(tmp_path, base_id=BASE)
    model.save_pretrained(tmp_path / "adapter")
    card = read_card(tmp_path / "adapter")
    assert card.data.base_model == BASE and f"base_model:adapter:{BASE}" in card.data.tags
    assert json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"] == BASE


class FakeHubApi:
    """The HfApi calls push_adapter_to_hub makes, recorded, with an optional README already in the repository."""

    def __init__(self, tmp_path: Path, remote_readme: str | None = None):
        self.tmp_path, self.remote_readme = tmp_path, remote_readme
        self.uploaded: dict[str, str] = {}

    def create_repo(self, repo_id, **kwargs):
        return SimpleNamespace(repo_id=repo_id)

    def hf_hub_download(self, repo_id, filename, **kwargs):
        if self.remote_readme is None:
            raise EntryNotFoundError(f"{filename} not in {repo_id}")
        path = self.tmp_path / "remote" / filename
        path.parent.mkdir(exist_ok=True)
        path.write_text(self.remote_readme, encoding="utf-8")
        return str(path)

    def upload_folder(self, *, repo_id, folder_path, **kwargs):
        for file in Path(folder_path).iterdir():
            self.uploaded[file.name] = file.read_bytes().decode("utf-8", errors="replace")
        return SimpleNamespace(repo_id=repo_id, kwargs=kwargs)


@pytest.mark.parametrize("remote_readme", [None, USER_README])
def test_push_uploads_our_card_with_the_given_facts(tmp_path, remote_readme):
    api = FakeHubApi(tmp_path, remote_readme)
    facts = {"metrics": retrieval_results(), "dataset": "msrvtt", "license": "apache-2.0"}
    info = push_adapter_to_hub(tiny_adapter(tmp_path, base_id=BASE), "user/clip-tfvl", api=api, card=facts)
    assert info.kwargs["commit_message"] == "Upload peft_video adapter"
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md"} <= api.uploaded.keys()
    card = ModelCard(api.uploaded["README.md"])
    assert_valid_hub_metadata(card)
    assert card.data.license == "apache-2.0" and '"user/clip-tfvl"' in card.text
    assert result_values(card)[("text-to-video-retrieval", "friedrichor/MSR-VTT", "test", "recall_at_1")] == 44.5
    if remote_readme is not None:
        assert card.data.language == "en" and "Trained on a Tuesday." in card.text


def test_transformers_push_to_hub_replaces_the_card(tmp_path, monkeypatch):
    # Why push_adapter_to_hub exists. If this starts failing, transformers keeps the saved card and the override of
    # PeftModelForVideoTextRetrieval.push_to_hub could go.
    import transformers.utils.hub as transformers_hub

    class NoRemoteCard(ModelCard):
        @classmethod
        def load(cls, *args, **kwargs):
            raise EntryNotFoundError("no README on the Hub yet")

    uploaded = {}
    monkeypatch.setattr(
        transformers_hub,
        "hf_api",
        lambda: SimpleNamespace(create_repo=lambda repo_id, **_: SimpleNamespace(repo_id=repo_id)),
    )
    monkeypatch.setattr(transformers_hub, "ModelCard", NoRemoteCard)
    model = tiny_adapter(tmp_path)
    monkeypatch.setattr(
        type(model), "_upload_modified_files",
        lambda self, folder, repo_id, **kw: uploaded.update(readme=(Path(folder) / "README.md").read_text()),
        raising=False,
    )  # fmt: skip
    PeftModel.push_to_hub(model, "user/clip-tfvl")  # transformers' own, not our override
    assert BEGIN_MARKER not in uploaded["readme"] and ModelCard(uploaded["readme"]).data.library_name == "transformers"


def test_usage_snippet_runs_on_a_local_base_model(tmp_path, monkeypatch):
    # The card's snippet, verbatim except for the caption and the base model's placeholder, on a tiny CLIP saved with
    # a processor, a TFVL adapter saved with save_pretrained, and a video written with PyAV.
    from transformers import CLIPImageProcessor, CLIPModel, CLIPProcessor
    from video_fixtures import write_video

    from peft_video.synthetic.tiny_clip import world_clip_config
    from peft_video.synthetic.tokenizer import build_tokenizer

    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    CLIPModel(world_clip_config(image_size=32)).save_pretrained("base")
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=image_processor, tokenizer=build_tokenizer()).save_pretrained("base")
    get_peft_model(CLIPModel.from_pretrained("base"), TFVLConfig(num_frames=4)).save_pretrained("adapter")
    write_video("video.mp4", num_frames=10)

    text = read_card(Path("adapter")).text
    snippet = re.search(r"```python\n(.*?)```", text, re.DOTALL).group(1)
    snippet = snippet.replace('"<base CLIP model: Hub id or folder>"', '"base"').replace(
        "<this adapter: Hub id or folder>", "adapter"
    )
    namespace: dict = {}
    exec(compile(snippet.replace('"a person is cooking"', '"a red circle"'), "model_card_snippet", "exec"), namespace)
    assert namespace["similarity"].shape == (1, 1) and torch.isfinite(namespace["similarity"]).all()
