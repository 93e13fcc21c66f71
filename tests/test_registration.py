"""`import peft_video` registers the methods with peft; a peft release that changes the internals used fails loudly."""

import re
from pathlib import Path

import peft
import pytest
import tomllib
from packaging.specifiers import SpecifierSet
from peft import PeftConfig, get_peft_model
from peft.auto import MODEL_TYPE_TO_PEFT_MODEL_MAPPING
from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING
from peft.utils import PeftType, TaskType

import peft_video
from peft_video import PeftModelForVideoTextRetrieval, TFVLConfig
from peft_video import _peft_registration as registration
from peft_video.tuners.tfvl import TFVLModel


def test_methods_and_task_type_are_registered():
    for method in peft_video.video_methods().values():
        member = method.peft_type
        assert PeftType(member).value == member
        assert PeftType[member] in PEFT_TYPE_TO_CONFIG_MAPPING
        assert PeftType[member] in PEFT_TYPE_TO_TUNER_MAPPING
    assert TaskType(peft_video.VIDEO_TASK_TYPE) in list(TaskType)
    assert MODEL_TYPE_TO_PEFT_MODEL_MAPPING[peft_video.VIDEO_TASK_TYPE] is PeftModelForVideoTextRetrieval
    assert PEFT_TYPE_TO_TUNER_MAPPING[PeftType.TFVL] is TFVLModel


def test_the_three_builtin_methods_register_themselves_on_import():
    assert {"tfvl", "dgl", "prompt_cube"} <= set(peft_video.video_methods())
    assert peft_video.get_video_method("TFVL").config_cls is TFVLConfig
    assert peft_video.get_video_method(PeftType.TFVL) is peft_video.get_video_method(TFVLConfig(num_frames=2))


def test_registration_is_idempotent(clip):
    method = peft_video.get_video_method("tfvl")
    registration.register_task_type()
    for _ in range(2):
        again = peft_video.register_video_method(
            name="tfvl",
            config_cls=TFVLConfig,
            model_cls=TFVLModel,
            display_name=method.display_name,
            description=method.description,
            citation=method.citation,
        )
        assert again is method
    assert isinstance(get_peft_model(clip, TFVLConfig(num_frames=2)), PeftModelForVideoTextRetrieval)


def test_config_round_trips_through_peft_config_from_pretrained(tmp_path):
    TFVLConfig(num_frames=6, image_temp_layers=[-1]).save_pretrained(tmp_path)
    loaded = PeftConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, TFVLConfig)
    assert loaded.num_frames == 6 and loaded.image_temp_layers == [-1]
    assert loaded.task_type == peft_video.VIDEO_TASK_TYPE


def test_installed_peft_is_in_the_tested_range_declared_in_pyproject():
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    declared = next(d for d in pyproject["project"]["dependencies"] if re.match(r"peft\b", d))
    assert SpecifierSet(declared.removeprefix("peft")) == SpecifierSet(registration.TESTED_PEFT_VERSIONS)
    assert peft.__version__ in SpecifierSet(registration.TESTED_PEFT_VERSIONS)


@pytest.mark.parametrize(
    "target, attribute, replacement, message",
    [
        ("peft.auto", "MODEL_TYPE_TO_PEFT_MODEL_MAPPING", None, "MODEL_TYPE_TO_PEFT_MODEL_MAPPING"),
        ("peft.mapping", "PEFT_TYPE_TO_TUNER_MAPPING", None, "PEFT_TYPE_TO_TUNER_MAPPING"),
        ("peft.utils.peft_types", "PeftType", type("PeftType", (), {}), "PeftType"),
        ("peft.utils.peft_types", "register_peft_method", lambda name: None, "register_peft_method"),
        ("peft.auto", "_BaseAutoPeftModel", None, "_BaseAutoPeftModel"),
    ],
)
def test_a_changed_peft_internal_fails_loudly(monkeypatch, target, attribute, replacement, message):
    monkeypatch.setattr(f"{target}.{attribute}", replacement)
    with pytest.raises(ImportError, match=rf"peft {re.escape(peft.__version__)}.*{message}") as error:
        registration.register_task_type()
    assert "tested with peft" in str(error.value)


def test_importing_peft_video_changes_no_outcome_of_peft_itself():
    """peft's enums and mappings only gain our members, at the end; every other outcome (config round trips, a LoRA
    model's outputs, state dict, saved config and reload, AutoPeftModel's refusal) equals a fresh interpreter's that
    never imported peft_video."""
    import json
    import os
    import subprocess
    import sys

    from peft_fingerprint import fingerprint

    script = "import json, peft_fingerprint; print(json.dumps(peft_fingerprint.fingerprint()))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    without = json.loads(result.stdout.strip().splitlines()[-1])
    with_video = json.loads(json.dumps(fingerprint()))

    added_types = [m.peft_type for m in peft_video.video_methods().values()]
    assert with_video.pop("peft_types") == without.pop("peft_types") + added_types
    assert with_video.pop("task_types") == without.pop("task_types") + [peft_video.VIDEO_TASK_TYPE]
    assert with_video["task_classes"].pop(peft_video.VIDEO_TASK_TYPE) == "PeftModelForVideoTextRetrieval"
    for mapping in ("config_classes", "tuner_classes", "prefixes"):
        for peft_type in added_types:
            with_video[mapping].pop(peft_type)
    assert with_video == without
