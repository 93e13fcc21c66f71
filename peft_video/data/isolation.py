"""Decoding in a helper process, so that a native decoder that hangs or crashes on a hostile file costs one sample,
not the run.

`IsolatedDecoder` owns one child process (a bare `os.fork()` where the platform has it, so it starts in milliseconds
and works inside daemonic DataLoader workers) and sends it
one video at a time over a pipe. When the child does not answer within `timeout` seconds it is killed and the video
reported as `DecodeTimeoutError`; when it dies (a segfault in FFmpeg) the video is reported as `DecoderCrashedError`.
Either way the next call starts a fresh child. DataLoader workers each create their own (lazily, never pickled).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import tempfile
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from . import decoding, native_log
from .errors import DecoderCrashedError, DecodeTimeoutError, VideoDecodeError
from .sampling import FrameSampling


@dataclass(frozen=True)
class IsolatedCall:
    """One unit of work for the helper: `function(*args)` about the file `path`. `function` must be importable by
    name (a module-level function), and its result picklable without torch tensors (numpy is fine)."""

    path: str
    function: Callable[..., Any]
    args: tuple = ()


def _decode_for_transfer(
    path: str | decoding.VideoBytes, sampling: FrameSampling, train: bool, seed: int | None, backend: str
):
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    video = decoding.decode_frames(path, sampling, train=train, generator=generator, backend=backend)
    return video.frames.numpy(), video.mask.numpy(), video.indices, video.metadata


def _serve(conn) -> None:
    """Child loop: run calls until the pipe closes, answering ("ok", result) or ("error", path, reason).

    Native decoders' stderr is captured (never printed): after a failure its distinct messages join the reason."""
    try:
        stderr = native_log.NativeStderrCapture()
    except OSError:  # no temporary file possible: decode anyway, native messages then reach stderr
        stderr = None
    while True:
        try:
            call: IsolatedCall = conn.recv()
        except (EOFError, OSError):
            return
        if stderr is not None:
            stderr.clear()
        try:
            conn.send(("ok", call.function(*call.args)))
        except VideoDecodeError as err:
            conn.send(("error", err.path, _with_native_log(err.reason, stderr)))
        except Exception as err:  # keep serving: report anything else against the file
            conn.send(("error", call.path, _with_native_log(f"{type(err).__name__}: {err}", stderr)))


def _with_native_log(reason: str, stderr: native_log.NativeStderrCapture | None) -> str:
    said = stderr.text() if stderr is not None else ""
    return f"{reason} [decoder log: {said}]" if said else reason


_PARENT_ENDS: weakref.WeakSet = weakref.WeakSet()


class _ForkedChild:
    """A child made with a bare `os.fork()`: DataLoader workers are daemonic processes, and multiprocessing refuses
    to let daemonic processes have children, so `multiprocessing.Process` cannot be used there."""

    def __init__(self, conn):
        self.exitcode: int | None = None
        self.pid = os.fork()
        if self.pid == 0:  # the child: serve, then leave without running the parent's atexit handlers
            code = 0
            try:
                # Drop every inherited parent end of a decoder pipe (ours and other decoders'), so that this child
                # sees EOF and exits when its parent goes away, and other children's crashes stay visible.
                for other in list(_PARENT_ENDS):
                    other.close()
                # The parent's OpenMP pool does not survive fork; one thread avoids waiting on its missing workers
                # (decoding is the child's job, its torch ops are small).
                torch.set_num_threads(1)
                _serve(conn)
            except BaseException:
                code = 1
            finally:
                os._exit(code)

    def _reap(self, block: bool) -> None:
        if self.exitcode is not None:
            return
        try:
            pid, status = os.waitpid(self.pid, 0 if block else os.WNOHANG)
        except ChildProcessError:
            self.exitcode = -1
            return
        if pid:
            self.exitcode = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)

    def is_alive(self) -> bool:
        self._reap(block=False)
        return self.exitcode is None

    def kill(self) -> None:
        if self.is_alive():
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def join(self, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.is_alive():
            if deadline is not None and time.monotonic() > deadline:
                return
            time.sleep(0.01)


def _start_child(conn):
    if hasattr(os, "fork"):
        return _ForkedChild(conn)
    process = mp.get_context("spawn").Process(target=_serve, args=(conn,), daemon=True, name="peft-video-decoder")
    process.start()
    return process


PIPE_BYTES_LIMIT = 2 * 2**20
"""Videos in memory up to this size go to the helper through the pipe; larger ones through a temporary file. The pipe
(pickling, small chunks) grows faster than linearly with the size while a file in the page cache does not: measured
here, 1 MiB costs a millisecond or two either way, 10 MiB about 15-40 ms by pipe and 3-10 ms by file, against ~100 ms
to decode 12 frames (`benchmarks/bench_data.py` reports both). Small clips take the pipe, which leaves no file behind
if this process is killed."""


class IsolatedDecoder:
    """`decode_frames` in a child process with a per-video timeout. Not thread-safe: one per thread."""

    def __init__(self, timeout: float = 60.0, backend: str = "auto"):
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        self.timeout = timeout
        self.backend = backend
        self._process = None
        self._conn = None

    def __getstate__(self):  # a DataLoader pickles datasets into workers: never carry a live child along
        return {"timeout": self.timeout, "backend": self.backend, "_process": None, "_conn": None}

    def _start(self) -> None:
        parent, child = mp.Pipe()
        _PARENT_ENDS.add(parent)
        process = _start_child(child)
        child.close()
        self._process, self._conn = process, parent

    def close(self) -> None:
        """Stop the child process (it is also stopped when this object is garbage collected)."""
        if self._conn is not None:
            self._conn.close()
        if self._process is not None:
            if self._process.is_alive():
                self._process.kill()
            self._process.join(timeout=5)
        self._process, self._conn = None, None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def decode(
        self, path: decoding.VideoSource, sampling: FrameSampling, *, train: bool = False, seed: int | None = None
    ) -> decoding.DecodedVideo:
        """Like `decoding.decode_frames`, but a hang becomes `DecodeTimeoutError`, a crash `DecoderCrashedError`.

        A video in memory (`VideoBytes`) reaches the helper through the pipe, or, above `PIPE_BYTES_LIMIT`, through a
        temporary file that this process deletes afterwards; either way errors name it by its `name`."""
        source = decoding.as_video_source(path)
        if isinstance(source, decoding.VideoBytes) and len(source.data) > PIPE_BYTES_LIMIT:
            with tempfile.NamedTemporaryFile(prefix="peft-video-", suffix=".video") as handle:
                handle.write(source.data)
                handle.flush()
                try:
                    return self.decode(handle.name, sampling, train=train, seed=seed)
                except VideoDecodeError as err:
                    raise type(err)(source.name, err.reason) from err
        frames, mask, indices, metadata = self.call(
            IsolatedCall(
                decoding.source_name(source), _decode_for_transfer, (source, sampling, train, seed, self.backend)
            )
        )
        return decoding.DecodedVideo(
            torch.from_numpy(np.asarray(frames)), torch.from_numpy(np.asarray(mask)), list(indices), metadata
        )

    def call(self, call: IsolatedCall) -> Any:
        """Run `call` in the helper; returns its result or raises `VideoDecodeError` (timeout, crash, failure)."""
        path = call.path
        if self._process is None or not self._process.is_alive():
            self.close()
            self._start()
        try:
            self._conn.send(call)
            ready = self._conn.poll(self.timeout)
            if not ready:
                self.close()
                raise DecodeTimeoutError(path, f"no result after {self.timeout:g} s; decoder process killed")
            reply = self._conn.recv()
        except (EOFError, BrokenPipeError, ConnectionResetError, OSError) as err:
            code = self._process.exitcode if self._process is not None else None
            if self._process is not None:
                self._process.join(timeout=1)
                code = self._process.exitcode
            self.close()
            raise DecoderCrashedError(path, f"decoder process died (exit code {code})") from err
        if reply[0] == "error":
            raise VideoDecodeError(reply[1], reply[2])
        return reply[1]


def child_pid(decoder: IsolatedDecoder) -> int | None:
    """The live child's pid (for tests and diagnostics)."""
    return decoder._process.pid if decoder._process is not None and decoder._process.is_alive() else None


def decode_many(
    paths: list[str],
    sampling: FrameSampling,
    *,
    jobs: int = 2,
    timeout: float = 60.0,
    backend: str = "auto",
):
    """Decode `paths` (evaluation positions) with `jobs` isolated helper processes; yields `(index, result)` in
    completion order, where `result` is a `DecodedVideo` or the `VideoDecodeError` that explains the failure."""
    yield from run_many(
        paths, lambda decoder, path: decoder.decode(path, sampling), jobs=jobs, timeout=timeout, backend=backend
    )


def run_many(
    paths: list[str],
    work_on: Callable[[IsolatedDecoder, str], Any],
    *,
    jobs: int = 2,
    timeout: float = 60.0,
    backend: str = "auto",
):
    """Apply `work_on(decoder, path)` to every path with `jobs` threads, each owning one `IsolatedDecoder`; yields
    `(index, result or VideoDecodeError)` in completion order. Every path is reported exactly once."""
    import queue
    import threading

    tasks: queue.Queue = queue.Queue()
    for item in enumerate(paths):
        tasks.put(item)
    results: queue.Queue = queue.Queue()

    def work() -> None:
        decoder = IsolatedDecoder(timeout, backend=backend)
        try:
            while True:
                try:
                    index, path = tasks.get_nowait()
                except queue.Empty:
                    return
                try:
                    results.put((index, work_on(decoder, path)))
                except VideoDecodeError as err:
                    results.put((index, err))
                except Exception as err:  # never lose a file: report it against its path
                    results.put((index, VideoDecodeError(path, f"{type(err).__name__}: {err}")))
        finally:
            decoder.close()

    threads = [threading.Thread(target=work, daemon=True) for _ in range(max(1, min(jobs, len(paths))))]
    for thread in threads:
        thread.start()
    for _ in range(len(paths)):
        yield results.get()
    for thread in threads:
        thread.join()
