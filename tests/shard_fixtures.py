"""Manifests of tiny videos for the shard tests, hand-made WebDataset tars (healthy and broken), and a loopback HTTP
server for reading shards from a URL."""

from __future__ import annotations

import functools
import http.server
import io
import json
import tarfile
import threading
from contextlib import contextmanager
from pathlib import Path

from video_fixtures import write_video

from peft_video.data import write_manifest


def write_video_manifest(directory: Path, count: int = 6, extra_captions: dict[int, list[str]] | None = None) -> Path:
    """`count` tiny videos (8-15 frames, so each file differs) and a CSV manifest, one row per caption: video i has
    caption `video i` plus `extra_captions[i]`."""
    extra_captions = extra_captions or {}
    rows = []
    for i in range(count):
        path = write_video(directory / "videos" / f"v{i}.mp4", num_frames=8 + i % 8)
        for caption in [f"video {i}", *extra_captions.get(i, [])]:
            rows.append({"video": str(path), "caption": caption, "video_id": f"v{i}", "split": "train"})
    return write_manifest(rows, directory / "manifest.csv")


def add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_tar(path: Path, samples: list[dict[str, bytes]]) -> Path:
    """A tar with one member per (key, extension) of `samples` (dicts with `__key__` and extension -> bytes)."""
    with tarfile.open(path, "w") as tar:
        for sample in samples:
            for extension, data in sample.items():
                if extension != "__key__":
                    add_member(tar, f"{sample['__key__']}.{extension}", data)
    return path


def caption_json(*captions: str, **extra) -> bytes:
    return json.dumps({"captions": list(captions), **extra}).encode()


@contextmanager
def http_server(directory: Path):
    """Serve `directory` on 127.0.0.1 (a random free port); yields the base URL."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        thread.join()
