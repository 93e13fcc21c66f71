import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Tiny models: each op takes microseconds, so a second OpenMP thread adds barrier waits, not speed, and on a loaded
# 2-core machine made test_train/test_evaluate 5-10x slower. Set before torch is imported (subprocesses inherit it).
os.environ.setdefault("OMP_NUM_THREADS", "1")

from peft_video.testing import make_clip, tiny_clip_config  # noqa: E402


@pytest.fixture
def clip_config():
    return tiny_clip_config()


@pytest.fixture
def clip(clip_config):
    return make_clip(clip_config, seed=0)


@pytest.fixture(scope="session")
def search_assets(tmp_path_factory):
    """A tiny world, a tiny CLIP and two TFVL adapters on it (tests/search_fixtures.py)."""
    from search_fixtures import make_assets

    return make_assets(tmp_path_factory.mktemp("search_assets"))
