"""A method that lives outside the library (tests/toy_method/) is trained, saved, loaded and carded with no edit
anywhere else: its package registering itself is all it takes, and a `peft_video.methods` entry point makes
`examples/train.py --method toy_mean` (and `PeftModel.from_pretrained` after a bare `import peft_video`) find it.
Run in fresh interpreters so that the toy method is registered only there, never in the rest of the test session."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from train_fixtures import EXAMPLES, base_argv, write_tiny_clip, write_tiny_world

TESTS = Path(__file__).resolve().parent

TRAIN_AND_SAVE = textwrap.dedent(
    """
    import json, sys
    import torch
    from peft import get_peft_model
    import peft_video
    import toy_method  # registers the method: nothing else names it
    from peft_video.testing import make_clip, random_captions, random_videos, tiny_clip_config
    from peft_video.loading import build_method_config, known_method_names
    from peft_video.optimization import parameter_groups

    out = sys.argv[1]
    assert "toy_mean" in peft_video.video_methods() and "toy_mean" in known_method_names()
    config = build_method_config("toy_mean", {"num_frames": 4})
    clip_config = tiny_clip_config()
    model = get_peft_model(make_clip(clip_config), config)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    optimizer = torch.optim.AdamW(parameter_groups(model, learning_rate=1e-2, other_learning_rate=0.0,
                                                   weight_decay=0.0))
    videos, captions = random_videos(clip_config, 4, 4), random_captions(clip_config, 4)
    model.train()
    for _ in range(3):
        loss = model(**captions, pixel_values=videos, return_loss=True).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    changed = sorted(k for k, v in model.named_parameters() if not torch.equal(v, before[k]))
    model.eval()
    model.save_pretrained(out)
    with torch.no_grad():
        embeds = model.get_video_features(pixel_values=videos).pooler_output
    torch.save(embeds, f"{out}/expected.pt")
    print(json.dumps({"changed": changed, "loss": float(loss)}))
    """
)

LOAD = textwrap.dedent(
    """
    import sys
    import torch
    from peft import PeftModel
    import peft_video
    import toy_method
    from peft_video.testing import make_clip, random_videos, tiny_clip_config

    out = sys.argv[1]
    clip_config = tiny_clip_config()
    model = PeftModel.from_pretrained(make_clip(clip_config), out).eval()
    assert type(model.peft_config["default"]).__name__ == "ToyMeanConfig"
    with torch.no_grad():
        embeds = model.get_video_features(pixel_values=random_videos(clip_config, 4, 4)).pooler_output
    torch.testing.assert_close(embeds, torch.load(f"{out}/expected.pt"))
    print("loaded")
    """
)


def _run(script: str, out: Path, *paths: Path) -> str:
    return _python(["-c", script, str(out)], *paths).stdout.strip().splitlines()[-1]


def _python(arguments: list[str], *paths: Path) -> subprocess.CompletedProcess:
    """A fresh interpreter with tests/ (and `paths`) importable."""
    path = os.pathsep.join([*map(str, paths), str(TESTS), os.environ.get("PYTHONPATH", "")])
    result = subprocess.run(
        [sys.executable, *arguments], env={**os.environ, "PYTHONPATH": path}, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


def test_a_method_outside_the_library_trains_saves_loads_and_is_carded(tmp_path):
    trained = json.loads(_run(TRAIN_AND_SAVE, tmp_path))
    assert trained["changed"] and all(".toy_mean_modules.default.residual." in k for k in trained["changed"])

    assert json.loads((tmp_path / "adapter_config.json").read_text())["peft_type"] == "TOY_MEAN"
    card = (tmp_path / "README.md").read_text()
    assert "Toy Mean" in card and "residual linear map on the mean" in card and "@misc{toymean" in card
    assert "- toy_mean" in card.split("---")[1]  # the method's tag in the front matter

    assert _run(LOAD, tmp_path) == "loaded"


LOAD_THROUGH_THE_ENTRY_POINT = textwrap.dedent(
    """
    import sys
    from peft import PeftModel
    from transformers import CLIPModel
    import peft_video  # nothing imports toy_method: the entry point does

    model = PeftModel.from_pretrained(CLIPModel.from_pretrained(sys.argv[2]), sys.argv[1])
    print(type(model.peft_config["default"]).__name__)
    """
)


def install_entry_point(site: Path) -> Path:
    """What `pip install` of a package declaring the entry point leaves on sys.path: its dist-info."""
    dist_info = site / "toy_method_package-0.1.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-method-package\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text("[peft_video.methods]\ntoy_mean = toy_method\n")
    return site


def test_a_method_of_another_installed_package_trains_through_the_script(tmp_path):
    site = install_entry_point(tmp_path / "site")
    clip, world, out = write_tiny_clip(tmp_path / "clip"), tmp_path / "world", tmp_path / "run"
    write_tiny_world(world)
    argv = base_argv(clip, world, out, method="toy_mean") + ["--max_steps", "2", "--eval_steps", "2"]
    argv += ["--license", "mit", "--hub_model_id", "someone/toy-mean"]
    _python([str(EXAMPLES / "train.py"), *argv], site)

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == "toy_mean" and metrics["steps"] == 2
    assert json.loads((out / "adapter_config.json").read_text())["peft_type"] == "TOY_MEAN"
    card = (out / "README.md").read_text()
    front = card.split("---")[1]
    assert "- toy_mean" in front and "license: mit" in front and "model-index" in front
    assert "Toy Mean" in card and "@misc{toymean" in card and '"someone/toy-mean"' in card
    assert "| Optimizer steps | 2 |" in card and f"{metrics['test']['text_to_video']['R@1']:.2f}" in card
    assert str(clip) not in card  # a local base model is never named in the card
    loaded = _python(["-c", LOAD_THROUGH_THE_ENTRY_POINT, str(out), str(clip)], site)
    assert loaded.stdout.strip().splitlines()[-1] == "ToyMeanConfig"
