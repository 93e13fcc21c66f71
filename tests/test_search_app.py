"""The Gradio search page in a real headless browser (Debian's Chromium driven by Playwright): the page loads, a
caption of the offline world returns its own video first, and a screenshot is written as a test artifact.

Needs `/usr/bin/chromium` (`apt-get install chromium`; `.ci/run` installs it) and Playwright-python (dev extra).
Without them the test fails with what to install; on a developer machine `PEFT_VIDEO_SKIP_BROWSER_TESTS=1` skips it
(never in CI, where `CI` is set).
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

ARTIFACTS = Path(os.environ.get("PEFT_VIDEO_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts"))
CHROMIUM = os.environ.get("PEFT_VIDEO_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def _browser_or_fail() -> None:
    missing = []
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        missing.append(f"Chromium at {CHROMIUM} (Debian/Ubuntu: `apt-get install chromium`)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append(
            'Playwright-python (`pip install -e ".[dev]"` or `pip install playwright`; no browser download)'
        )
    if not missing:
        return
    message = "the search-page browser test needs " + " and ".join(missing)
    if os.environ.get("PEFT_VIDEO_SKIP_BROWSER_TESTS") == "1" and not os.environ.get("CI"):
        pytest.skip(message + " (skipped: PEFT_VIDEO_SKIP_BROWSER_TESTS=1)")
    pytest.fail(message + "; set PEFT_VIDEO_SKIP_BROWSER_TESTS=1 to skip it on a developer machine", pytrace=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module", params=["files", "shards"])
def world_index(request, tmp_path_factory):
    """The offline world's test split indexed with the committed tiny CLIP (zero-shot: it knows still frames), from
    its files or from WebDataset shards written from them (hits named `<shard>#<key>`)."""
    from peft_video.data import load_manifest, write_shards
    from peft_video.search import build_index
    from peft_video.synthetic import TINY_CLIP_PATH, WorldConfig, write_world

    root = tmp_path_factory.mktemp("app")
    manifest = write_world(root / "world", num_train=2, num_val=2, num_test=24, config=WorldConfig(num_frames=8))
    source = manifest
    if request.param == "shards":
        source = root / "shards"
        write_shards(load_manifest(manifest, split="test"), source, max_shard_samples=8)
    build_index(
        source, root / "index", base_model=TINY_CLIP_PATH, num_frames=8, split="test", decode_timeout=None,
        progress=False,
    )  # fmt: skip
    return root / "index"


def test_the_page_finds_a_caption_s_own_video_in_a_real_browser(world_index):
    _browser_or_fail()
    from playwright.sync_api import sync_playwright

    from peft_video.search import VideoSearchIndex
    from peft_video.search.app import launch_app

    index = VideoSearchIndex.open(world_index)
    # the expected answer: a caption whose own video the library ranks first (the tiny CLIP knows still frames, so
    # captions of colours, shapes and positions find their videos)
    query, expected = next(
        (row["captions"][0], row["video_id"])
        for row in index.metadata
        if index.search(row["captions"][0], k=1)[0].video_id == row["video_id"]
    )
    port = _free_port()
    demo = launch_app(world_index, port=port, prevent_thread_lock=True, quiet=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shards = ".tar#" in index.metadata[0]["video"]
    screenshot = ARTIFACTS / ("search_app_shards.png" if shards else "search_app.png")
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(f"http://127.0.0.1:{port}", timeout=60_000)
                page.get_by_text("Search 24 videos").wait_for(timeout=60_000)  # Gradio renders after "Loading..."
                page.locator("#query textarea").fill(query)
                page.locator("#search").click()
                first_row = page.locator("#hits table tbody tr").first
                first_row.wait_for(timeout=60_000)
                cells = first_row.locator("td").all_inner_texts()
                page.locator("#strips img").wait_for(timeout=30_000)
                page.locator("#best video").wait_for(timeout=30_000)  # played from a copy when it lives in a shard
                page.screenshot(path=str(screenshot), full_page=True)
            finally:
                browser.close()
    finally:
        demo.close()
    assert cells[0].strip() == "1" and expected in cells[2], (query, cells)
    assert "✓" in cells[2]  # the query is the top hit's own caption: marked as ground truth
    assert screenshot.stat().st_size > 10_000
