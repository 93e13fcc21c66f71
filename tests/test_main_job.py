"""The README's main job, end to end on a tiny world: train from a config file, `peft-video index` the test split
with the trained adapter, `peft-video search` it, and `benchmarks/search_top1.py` measure how often a caption's own
video comes first; and the README's commands name the demo config's paths and quote the script's committed figures."""

from __future__ import annotations

import json
import re
import shlex

import pytest
import yaml
from train_fixtures import REPO, WORLD, load_script, write_tiny_clip, write_tiny_world

from peft_video.cli import main as cli

DEMO_CONFIG = REPO / "examples" / "configs" / "demo_tfvl.yaml"
RESULTS = REPO / "benchmarks" / "results" / "search_top1.md"


def load_benchmark(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def readme_main_job() -> list[list[str]]:
    """The README quick start's first command, split into its `&&` steps (each a list of words)."""
    readme = (REPO / "README.md").read_text()
    quick_start = readme[readme.index("## Quick start") :]
    command = re.search(r"```bash\n(.*?)```", quick_start, re.DOTALL).group(1).replace("\\\n", " ")
    return [shlex.split(step) for step in command.strip().split("&&")]


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """The three steps on a tiny world, from a config file as the README's main job runs them."""
    root = tmp_path_factory.mktemp("main_job")
    clip = write_tiny_clip(root / "clip")
    write_tiny_world(root / "world")
    config = {
        "method": "tfvl", "model_name_or_path": str(clip), "dataset": "offline_world", **WORLD,
        "data_dir": str(root / "world"), "num_frames": 4, "max_text_length": 16, "decode_timeout": 0,
        "output_dir": str(root / "demo"), "overwrite_output_dir": True, "max_steps": 4, "eval_steps": 2,
        "per_device_train_batch_size": 4, "per_device_eval_batch_size": 8, "learning_rate": 1e-2,
        "report_to": "none", "disable_tqdm": True, "eval_before_training": True,
    }  # fmt: skip
    config_file = root / "demo.yaml"
    config_file.write_text(yaml.safe_dump(config))
    metrics = load_script("train").main([str(config_file)])
    index = root / "demo" / "test_index"
    manifest = root / "world" / "manifest.jsonl"
    argv = ["index", str(manifest), "--split", "test", "--adapter", str(root / "demo"), "--out", str(index)]
    assert cli(argv + ["--timeout", "0", "--no-progress"]) == 0
    return {"root": root, "config": config_file, "metrics": metrics, "index": index, "manifest": manifest}


def test_the_index_of_the_test_split_is_searched_with_the_trained_adapter(job, capsys):
    from peft_video.search import VideoSearchIndex

    index = VideoSearchIndex.open(job["index"])
    assert len(index) == WORLD["world_num_test"] and index.identity["adapter"] == str((job["root"] / "demo").resolve())
    caption = next(c for captions in index.metadata["captions"] for c in captions)
    assert cli(["search", str(job["index"]), caption, "-k", "3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [hit["rank"] for hit in result["hits"]] == [1, 2, 3] and result["query"] == caption


def test_search_top1_measures_what_evaluation_measured(job, tmp_path):
    out = tmp_path / "top1.md"
    results = load_benchmark("search_top1").main(["--config", str(job["config"]), "--out", str(out)])
    assert set(results) == {"tfvl", "zero_shot"} and (job["root"] / "demo" / "test_index_zero_shot").is_dir()
    test, zero_shot = job["metrics"]["test"]["text_to_video"], job["metrics"]["zero_shot"]["test"]["text_to_video"]
    # the search path (processor, index, FAISS) ranks as the evaluation did: same R@1 and R@5, ties against
    assert results["tfvl"]["captions"] == test["num_queries"] == WORLD["world_num_test"]
    assert 100 * results["tfvl"]["first"] == pytest.approx(test["R@1"])
    assert 100 * results["tfvl"]["within"] == pytest.approx(test["R@5"])
    assert 100 * results["zero_shot"]["first"] == pytest.approx(zero_shot["R@1"])
    table = out.read_text()
    assert "| tfvl | 8 | 8 |" in table and "| zero_shot | 8 | 8 |" in table and "search_top1.py --config" in table


def test_readme_main_job_chains_train_index_and_search_on_the_demo_configs_paths():
    config = yaml.safe_load(DEMO_CONFIG.read_text())
    steps = readme_main_job()
    assert steps[0][:2] == ["pip", "install"] and any("examples/train.py" in step for step in steps)
    train = next(step for step in steps if "examples/train.py" in step)
    assert train[train.index("--config") + 1] == str(DEMO_CONFIG.relative_to(REPO))
    index = next(step for step in steps if step[:2] == ["peft-video", "index"])
    search = next(step for step in steps if step[:2] == ["peft-video", "search"])
    assert index[2] == f"{config['data_dir']}/manifest.jsonl"
    assert index[index.index("--split") + 1] == config.get("test_split", "test")
    assert index[index.index("--adapter") + 1] == config["output_dir"]
    test_index = index[index.index("--out") + 1]
    assert test_index == f"{config['output_dir']}/{load_benchmark('search_top1').INDEX_NAME}" == search[2]
    assert len(search) >= 4 and search[3].strip()  # a text query


def test_readme_quotes_the_committed_search_figures():
    readme = (REPO / "README.md").read_text()
    table = RESULTS.read_text()
    command = re.search(r"Command: `(python benchmarks/search_top1\.py [^`]*)`", table).group(1)
    assert f"`{command}`" in readme and "--config examples/configs/demo_tfvl.yaml" in command
    rows = re.findall(r"^\| (\w+) \| \d+ \| \d+ \| ([\d.]+) % \| ([\d.]+) % \|", table, re.MULTILINE)
    assert {name for name, _, _ in rows} == {"tfvl", "zero_shot"}
    for _, first, within in rows:
        assert f"{first} %" in readme and f"{within} %" in readme
