"""Put a folder into a Hugging Face Hub cache under a repo id, in the layout huggingface_hub writes
(`models--user--name/refs/main` + `snapshots/<commit>/`), so that `from_pretrained(repo_id)` resolves it offline."""

from __future__ import annotations

import shutil
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def add_to_hub_cache(cache: Path, repo_id: str, folder: Path) -> Path:
    """Copy every file of `folder` into the cache as `repo_id` at revision `main`; returns the snapshot folder."""
    repo = Path(cache) / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    for file in Path(folder).iterdir():
        if file.is_file():
            shutil.copyfile(file, snapshot / file.name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return snapshot
