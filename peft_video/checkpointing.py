"""Sealed, resumable training checkpoints on top of Accelerate's `save_state` / `load_state`.

Accelerate writes a checkpoint's files (weights, optimizer, scheduler, sampler, RNG and `register_for_checkpointing`
states) but cannot tell a complete checkpoint from one a crash interrupted, or from one damaged afterwards, and its
`total_limit` rotation deletes the previous checkpoint before the new one is written. This module adds what a long run
on shared machines needs:

- **seal** (`seal_checkpoint`): once every process's files are written, `checkpoint_files.json` records each file's
  size and SHA-256; it is written last, atomically, so its presence marks a complete checkpoint;
- **verify** (`checkpoint_problems`): a missing seal, or a file missing, truncated or overwritten, named;
- **find** (`find_checkpoint`): the folder to resume from, `last` being the newest intact one (a damaged newer one is
  passed over with a warning naming what is wrong);
- **rotate** (`rotate_checkpoints`): the oldest complete checkpoints beyond a limit, removed only after the new one
  is sealed (as transformers' Trainer does), so even a limit of 1 survives a crash while saving;
- **per-process stream positions** (`save_checkpoint(stream_loader=...)`, `load_stream_state`): a streamed source's
  loader state, which `register_for_checkpointing` would save for the main process only;
- **the run's identity** (`refuse_another_run`): a checkpoint written with another method, base model, batch setting
  ... is refused with the differences named;
- **the output folder's logs** (`start_output_dir`, `keep_log_lines`, `append_line`): a fresh run clears an earlier
  run's files, a resumed one drops what it will write again.

    accelerator = Accelerator(project_config=ProjectConfiguration(project_dir=out, automatic_checkpoint_naming=True))
    keep_trainable_weights(accelerator, model)            # a checkpoint holds the adapter, not the frozen base model
    accelerator.register_for_checkpointing(scheduler, state)
    checkpoint = find_checkpoint(out, "last")
    if checkpoint: refuse_another_run(checkpoint, identity); accelerator.load_state(str(checkpoint), strict=False)
    ...
    save_checkpoint(accelerator, step, keep=2)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

SEAL_FILE = "checkpoint_files.json"  # written last: every file's size and SHA-256; its presence marks a complete one
STREAM_STATE_FILE = "stream_rank{rank}.pt"  # a streamed source: each process' own position in its own shards
CHECKPOINTS_DIR = "checkpoints"  # Accelerate's automatic_checkpoint_naming: <project_dir>/checkpoints/checkpoint_<i>
RESUME_LAST = ("last", "latest", "true", "True")


def checkpoint_folders(output_dir: str | os.PathLike) -> list[Path]:
    """output_dir's checkpoint folders (complete or not), oldest first."""
    folders = Path(output_dir, CHECKPOINTS_DIR).glob("checkpoint_*")
    return sorted((p for p in folders if _step_of(p) is not None), key=_step_of)


def _step_of(folder: Path) -> int | None:
    suffix = folder.name.split("_")[-1]
    return int(suffix) if suffix.isdigit() else None


def file_digest(path: Path) -> str:
    """The SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def seal_checkpoint(folder: str | os.PathLike) -> None:
    """Record the size and SHA-256 of every file of a complete checkpoint, in SEAL_FILE, written last (and atomically):
    a checkpoint without it was interrupted while saving; one whose files differ from it was damaged afterwards."""
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != SEAL_FILE)
    record = {str(p.relative_to(folder)): {"size": p.stat().st_size, "sha256": file_digest(p)} for p in files}
    partial = folder / f".{SEAL_FILE}.partial"
    partial.write_text(json.dumps({"files": record}, indent=1) + "\n")
    os.replace(partial, folder / SEAL_FILE)


def checkpoint_problems(folder: str | os.PathLike) -> list[str]:
    """What makes `folder` unusable as a checkpoint (empty: complete and intact): no seal (not a checkpoint, or one
    interrupted while saving), or a file missing, of another size, or with other content than the seal records."""
    folder = Path(folder)
    if not folder.is_dir():
        return [f"{folder} is not a folder"]
    if not (folder / SEAL_FILE).is_file():
        return [f"incomplete: no {SEAL_FILE} (the run stopped while saving it, or it is not a checkpoint)"]
    try:
        recorded = json.loads((folder / SEAL_FILE).read_text())["files"]
    except (ValueError, KeyError, TypeError) as err:
        return [f"{SEAL_FILE} is unreadable ({err})"]
    problems = []
    for name, facts in recorded.items():
        path = folder / name
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif path.stat().st_size != facts["size"]:
            problems.append(f"{name} has {path.stat().st_size} bytes, {facts['size']} when saved (truncated?)")
        elif file_digest(path) != facts["sha256"]:
            problems.append(f"{name} differs from what was saved (SHA-256 mismatch: overwritten or zeroed?)")
    return problems


def find_checkpoint(
    output_dir: str | os.PathLike,
    resume_from_checkpoint: str | None,
    *,
    overwrite_output_dir: bool = False,
    warn: bool = True,
) -> Path | None:
    """The checkpoint to resume from: a folder (refused, with what is wrong, unless complete and intact), or `last`
    (output_dir's newest complete, intact checkpoint; a damaged or incomplete newer one is skipped with a warning
    naming what is wrong), or None for a fresh run, which an output_dir holding checkpoints only gets with
    `overwrite_output_dir`."""
    folders = checkpoint_folders(output_dir)
    if resume_from_checkpoint in RESUME_LAST:
        passed = []
        for folder in reversed(folders):
            problems = checkpoint_problems(folder)
            if not problems:
                if passed and warn:
                    warnings.warn(
                        f"resume_from_checkpoint=last: {'; '.join(passed)}. Falling back to {folder}", stacklevel=2
                    )
                return folder
            passed.append(f"{folder} is not usable ({'; '.join(problems)})")
        raise FileNotFoundError(
            f"resume_from_checkpoint=last but {output_dir}/{CHECKPOINTS_DIR} holds no complete, intact checkpoint"
            + (f": {'; '.join(passed)}" if passed else "")
        )
    if resume_from_checkpoint:
        if problems := checkpoint_problems(resume_from_checkpoint):
            raise ValueError(
                f"cannot resume from {resume_from_checkpoint}: {'; '.join(problems)}. Name another checkpoint, "
                "or use --resume_from_checkpoint last (the newest intact one)"
            )
        return Path(resume_from_checkpoint)
    if any((p / SEAL_FILE).is_file() for p in folders) and not overwrite_output_dir:
        raise FileExistsError(
            f"{output_dir} already holds checkpoints of a run; continue it with --resume_from_checkpoint last or "
            "start afresh with --overwrite_output_dir true"
        )
    return None


def keep_trainable_weights(accelerator: Any, model: torch.nn.Module) -> None:
    """Make `accelerator.save_state` write only `model`'s trainable tensors (the adapter, not the frozen base model);
    load such a checkpoint with `load_state(..., strict=False)`."""
    trainable = {n for n, p in accelerator.unwrap_model(model).named_parameters() if p.requires_grad}

    def keep(models, weights, folder):
        for i, named in enumerate(weights):
            weights[i] = {k: v for k, v in named.items() if k.removeprefix("module.") in trainable}

    accelerator.register_save_state_pre_hook(keep)


def save_checkpoint(
    accelerator: Any, step: int, *, stream_position: Mapping[str, Any] | None = None, keep: int | None = None
) -> Path:
    """checkpoints/checkpoint_<step>: Accelerate's state (weights, optimizer, scheduler, sampler, RNG, registered
    objects), this process' `stream_position` (a streamed source: `register_for_checkpointing` objects are saved by
    the main process only), then the seal; then the oldest complete checkpoints beyond `keep` are removed. A
    collective: every process calls it."""
    accelerator.project_configuration.iteration = step  # names it checkpoints/checkpoint_<step>
    folder = Path(accelerator.save_state())
    if stream_position is not None:
        name = STREAM_STATE_FILE.format(rank=accelerator.process_index)
        torch.save(dict(stream_position), folder / f".{name}.partial")
        os.replace(folder / f".{name}.partial", folder / name)
    accelerator.wait_for_everyone()  # every process's files are in the folder before it is sealed
    if accelerator.is_main_process:
        seal_checkpoint(folder)
        rotate_checkpoints(folder.parent.parent, keep)
    return folder


def rotate_checkpoints(output_dir: str | os.PathLike, keep: int | None) -> None:
    """Keep output_dir's newest `keep` complete checkpoints (None or <= 0: all, as transformers' `rotate_checkpoints`),
    and remove incomplete ones older than the newest complete one. Called after the new one is sealed, as transformers
    does, not before it is written as Accelerate's `total_limit` does: a run killed while saving still has its
    previous checkpoint."""
    if keep is None or keep <= 0:
        return
    folders = checkpoint_folders(output_dir)
    complete = [p for p in folders if (p / SEAL_FILE).is_file()]
    newest = _step_of(complete[-1]) if complete else -1
    leftovers = [p for p in folders if p not in complete and _step_of(p) < newest]
    for folder in complete[:-keep] + leftovers:
        shutil.rmtree(folder)


def load_stream_state(checkpoint: str | os.PathLike, loader: Any, rank: int) -> dict[str, Any]:
    """Put this process' stream loader (a torchdata `StatefulDataLoader`) where `checkpoint` left it; returns the rest
    of the position `save_checkpoint` stored with it (e.g. epoch and batches read)."""
    path = Path(checkpoint) / STREAM_STATE_FILE.format(rank=rank)
    if not path.is_file():
        raise FileNotFoundError(
            f"{checkpoint} has no {path.name}: it was not written by a run on a streamed source with this process "
            "count"
        )
    position = torch.load(path, weights_only=False)  # written by save_checkpoint: plain Python containers
    try:
        loader.load_state_dict(position.pop("loader"))
    except (ValueError, KeyError) as err:  # another shuffle_buffer, seed, world size or worker count
        raise ValueError(f"cannot resume the stream from {path}: {err}") from err
    return position


def refuse_another_run(checkpoint: str | os.PathLike, identity: Mapping[str, Any], index: int) -> None:
    """Raise, naming what differs, when `checkpoint` was written by a run of another `identity` (what a checkpoint
    must share with this run to continue it: method, base model, batch setting... ; for a dict, the keys that differ).
    The identity is read from the state registered `index`-th with `register_for_checkpointing` (an object whose
    `state_dict()` holds it under "identity")."""
    from accelerate.checkpointing import load_custom_state

    saved = _Holder()
    load_custom_state(saved, str(checkpoint), index=index)
    theirs_all = saved.state.get("identity") or {}
    differences = []
    for key, ours in identity.items():
        theirs = theirs_all.get(key)
        pairs = [(key, theirs, ours)]
        if isinstance(ours, dict) and isinstance(theirs, dict):
            pairs = [(f"{key}.{k}", theirs.get(k), ours.get(k)) for k in sorted({*theirs, *ours})]
        differences += [f"{name}: checkpoint {a!r} vs this run {b!r}" for name, a, b in pairs if a != b]
    if differences:
        raise ValueError(f"cannot resume from {checkpoint}, written by another run setting: " + "; ".join(differences))


class _Holder:
    """Receives a registered state from `load_custom_state` without touching the live one."""

    def __init__(self) -> None:
        self.state: dict[str, Any] = {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.state = dict(state)


def start_output_dir(
    output_dir: str | os.PathLike,
    checkpoint: Path | None,
    step: int,
    *,
    fresh_removes: Iterable[str] = (),
    logs: Iterable[str] = (),
) -> None:
    """A fresh run (`checkpoint` None) removes an earlier run's checkpoints, the folders `fresh_removes` and the
    JSON-lines `logs` (call it once every check has passed); a resumed run drops the checkpoints after the `step` it
    resumes from and those logs' lines after it (they are written again)."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if checkpoint is None:
        for folder in (CHECKPOINTS_DIR, *fresh_removes):
            shutil.rmtree(output_dir / folder, ignore_errors=True)
        for log in logs:
            (output_dir / log).unlink(missing_ok=True)
        return
    for later in checkpoint_folders(output_dir):
        if _step_of(later) > step:
            shutil.rmtree(later)
    for log in logs:
        keep_log_lines(output_dir / log, step)


def keep_log_lines(log: str | os.PathLike, step: int) -> None:
    """Drop the lines of a JSON-lines log (records with a "step") written after optimizer step `step`."""
    log = Path(log)
    if log.exists():
        lines = [line for line in log.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
        log.write_text("".join(line + "\n" for line in lines))


def append_line(log: str | os.PathLike, record: Mapping[str, Any]) -> None:
    """Append one JSON record to a JSON-lines log (its folder created)."""
    log = Path(log)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as handle:
        handle.write(json.dumps(record) + "\n")
