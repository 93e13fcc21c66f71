"""A web page over an index (Gradio, the optional extra `pip install "peft-video[app]"`): a text box, and the top-k
videos as frame strips with their scores, a ranked table, and the best hit as a playable video.

    peft-video app indexes/test --port 7860          # then open http://127.0.0.1:7860
    demo = build_app(VideoSearchIndex.open("indexes/test")); demo.launch()

Queries are encoded with the index's own adapter, as `peft-video search` does.
"""

from __future__ import annotations

import os
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


def answer(index: Any, query: str, k: int) -> tuple[Any, str, str | None]:
    """(a contact sheet of the hits: frame strips with rank and score, a Markdown table of the hits, the best hit's
    video when a browser can play it) for `query`; raises ValueError for an empty query."""
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
    return sheet, "\n".join(rows), best


def build_app(index: Any, k: int = 8):
    """A `gradio.Blocks` page searching `index` (a `VideoSearchIndex` or its folder)."""
    gr = _import_gradio()
    from .query import VideoSearchIndex

    if not isinstance(index, VideoSearchIndex):
        index = VideoSearchIndex.open(index)
    identity = index.identity
    model = f"adapter `{identity['adapter']}`" if identity["adapter"] else "zero-shot (no adapter)"

    def run(query: str, top_k: float):
        try:
            return answer(index, query, int(top_k))
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
    demo.peft_video_allowed_paths = _video_roots(index)
    return demo


def _video_roots(index: Any) -> list[str]:
    """Folders the page may serve videos from (Gradio serves only files under allowed paths)."""
    folders = sorted({os.path.dirname(v) for v in index.metadata["video"]})
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
