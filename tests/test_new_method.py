"""A method that lives outside the library (tests/toy_method/) is trained, saved, loaded and carded with no edit
anywhere else: its package registering itself is all it takes. Run in fresh interpreters so that the toy method is
registered only there, never in the rest of the test session."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

TESTS = Path(__file__).resolve().parent

TRAIN_AND_SAVE = textwrap.dedent(
    """
    import json, sys
    import torch
    from peft import get_peft_model
    import peft_video
    import toy_method  # registers the method: nothing else names it
    from peft_video.testing import make_clip, random_captions, random_videos, tiny_clip_config
    from peft_video.training import build_method_config, known_method_names, parameter_groups

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


def _run(script: str, out: Path) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, "-c", script, str(out)], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-1]


def test_a_method_outside_the_library_trains_saves_loads_and_is_carded(tmp_path):
    trained = json.loads(_run(TRAIN_AND_SAVE, tmp_path))
    assert trained["changed"] and all(".toy_mean_modules.default.residual." in k for k in trained["changed"])

    assert json.loads((tmp_path / "adapter_config.json").read_text())["peft_type"] == "TOY_MEAN"
    card = (tmp_path / "README.md").read_text()
    assert "Toy Mean" in card and "residual linear map on the mean" in card and "@misc{toymean" in card
    assert "- toy_mean" in card.split("---")[1]  # the method's tag in the front matter

    assert _run(LOAD, tmp_path) == "loaded"
