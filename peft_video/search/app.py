"""A web page over an index (Gradio, the optional extra `pip install "peft-video[app]"`): a text box, and the top-k
videos as frame strips with their scores, a ranked table, and the best hit as a playable video.

    peft-video app indexes/test --port 7860          # then open http://127.0.0.1:7860
    demo = build_app(VideoSearchIndex.open("indexes/test")); demo.launch()

Queries are encoded with the index's own adapter, as `peft-video search` does.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

PLAYABLE = (".mp4", ".webm", ".ogg")
"""Containers a browser plays without conversion (others are shown as frame strips only)."""


def _import_gradio():
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from a search page
    try:
        import gradio
    except ImportError as err:
        raise ImportError(
            'the search page needs Gradio: pip install "peft-video[app]" (or pip install gradio)'
        ) from err
    return gradio


def answer(index: Any, query: str, k: int, media_dir: str | os.PathLike | None = None) -> tuple[Any, str, str | None]:
    """(a contact sheet of the hits: frame strips with rank and score, a Markdown table of the hits, the best hit's
    video when a browser can play it) for `query`; raises ValueError for an empty query. A best hit that lives in a
    shard (`<shard>#<key>`) is played from a copy of its bytes written to `media_dir` (none without one)."""
    from .gallery import contact_sheet

    hits = index.search(query, k=int(k))
    truth = {h.video_id for h in hits if query.strip().lower() in [c.lower() for c in h.captions]}
    sheet = contact_sheet(query, hits, ground_truth=truth, frames=6, height=80)
    rows = ["| rank | score | video | caption |", "| ---: | ---: | --- | --- |"]
    for h in hits:
        mark = " ✓" if h.video_id in truth else ""
        caption = (h.captions[0] if h.captions else Path(h.video).name).replace("|", "\\|")
        rows.append(f"| {h.rank} | {h.score:.3f} | `{h.video_id}`{mark} | {caption} |")
    if truth:
        rows.append("\n✓ the query is one of this video's captions")
    best = hits[0].video if hits and Path(hits[0].video).suffix.lower() in PLAYABLE else None
    if hits and best is None and media_dir is not None:
        best = _playable_copy(hits[0].video, Path(media_dir))
    return sheet, "\n".join(rows), best


def _playable_copy(video: str, media_dir: Path) -> str | None:
    """A file with the bytes of a shard sample, when its container is one a browser plays (MP4 or WebM, sniffed:
    a shard member's name does not travel with the index); None otherwise."""
    import hashlib

    from .shard_sources import shard_member_bytes, split_sample_name

    if not split_sample_name(video):
        return None
    try:
        data = shard_member_bytes(video)
    except (LookupError, OSError):
        return None
    extension = "mp4" if data[4:8] == b"ftyp" else "webm" if data[:4] == b"\x1a\x45\xdf\xa3" else None
    if extension is None:
        return None
    path = media_dir / f"{hashlib.sha1(video.encode()).hexdigest()[:16]}.{extension}"
    if not path.is_file():
        media_dir.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return str(path)


def build_app(index: Any, k: int = 8):
    """A `gradio.Blocks` page searching `index` (a `VideoSearchIndex` or its folder)."""
    gr = _import_gradio()
    from .query import VideoSearchIndex

    if not isinstance(index, VideoSearchIndex):
        index = VideoSearchIndex.open(index)
    identity = index.identity
    model = f"adapter `{identity['adapter']}`" if identity["adapter"] else "zero-shot (no adapter)"

    media = Path(tempfile.mkdtemp(prefix="peft-video-app-"))  # best hits that live in shards, played from here
    atexit.register(shutil.rmtree, media, True)

    def run(query: str, top_k: float):
        try:
            return answer(index, query, int(top_k), media)
        except ValueError as err:
            raise gr.Error(str(err)) from err

    with gr.Blocks(title="peft_video search") as demo:
        gr.Markdown(
            f"## Search {len(index)} videos\n`{index.directory}` · {model} on `{identity['base_model']}` · "
            f"FAISS {index.info['factory']}"
        )
        with gr.Row():
            query = gr.Textbox(label="Describe the video", placeholder="a red circle moves from left to right",
                               elem_id="query", scale=4)  # fmt: skip
            top_k = gr.Slider(1, min(50, len(index)), value=min(k, len(index)), step=1, label="results", scale=1)
            button = gr.Button("Search", variant="primary", elem_id="search", scale=1)
        with gr.Row():
            with gr.Column(scale=3):
                strips = gr.Image(label="Results: frames across each video", type="pil", elem_id="strips")
            with gr.Column(scale=2):
                table = gr.Markdown(elem_id="hits")
                video = gr.Video(label="Best hit", elem_id="best", interactive=False)
        for event in (button.click, query.submit):
            event(run, [query, top_k], [strips, table, video])
    demo.peft_video_allowed_paths = _video_roots(index) + [str(media)]
    return demo


def _video_roots(index: Any) -> list[str]:
    """Folders the page may serve videos from (Gradio serves only files under allowed paths): those of the indexed
    files (not the shards of shard samples, which are served from copies)."""
    folders = sorted({os.path.dirname(v) for v in index.metadata["video"] if "#" not in v or os.path.exists(v)})
    try:
        return [os.path.commonpath(folders)] if folders else []
    except ValueError:  # different drives (Windows)
        return folders


def launch_app(index_dir: str | os.PathLike, *, host: str = "127.0.0.1", port: int = 7860, k: int = 8, **kwargs):
    """Serve `build_app` for the index at `index_dir` (blocks until stopped unless `prevent_thread_lock=True`);
    returns the `gradio.Blocks` (`.close()` stops the server)."""
    demo = build_app(index_dir, k=k)
    demo.launch(
        server_name=host,
        server_port=port,
        allowed_paths=demo.peft_video_allowed_paths,
        show_error=True,
        **kwargs,
    )
    return demo
