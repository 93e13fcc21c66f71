"""Indexing a collection that lives in shards (WebDataset tars, Parquet files, a `peft-video shard` folder, a
`datasets` dataset holding bytes) without exploding it to disk: the same embeddings as from the files the shards were
written from, one index shard per input shard, resumption after a kill, incremental adds of new shards, broken
samples named `shard#key`, and pictures of shard-sourced hits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from search_fixtures import FAST, index_with_two_processes, kill_build_after_two_shards
from shard_fixtures import add_member, caption_json

from peft_video.cli import main as cli_main
from peft_video.data import load_manifest
from peft_video.data.shard_writer import write_shards
from peft_video.search import VideoSearchIndex, VideoTextEncoder, build_index

SPLIT = "test"


@pytest.fixture(scope="module")
def encoder(search_assets):
    return VideoTextEncoder.load(adapter=search_assets.adapter)


@pytest.fixture(scope="module")
def shards(search_assets, tmp_path_factory):
    """The test split written as WebDataset and as Parquet shards of 3 videos (3 shards each), and the split of
    the whole world into one folder per split."""
    root = tmp_path_factory.mktemp("shards")
    data = load_manifest(search_assets.manifest, split=SPLIT)
    write_shards(data, root / "wds", format="webdataset", max_shard_samples=3)
    write_shards(data, root / "parquet", format="parquet", max_shard_samples=3)
    return root


@pytest.fixture(scope="module")
def from_files(search_assets, encoder, tmp_path_factory):
    directory = tmp_path_factory.mktemp("files") / "idx"
    build_index(search_assets.manifest, directory, encoder=encoder, split=SPLIT, **FAST)
    return VideoSearchIndex.open(directory, encoder=encoder)


def _by_id(index: VideoSearchIndex) -> dict[str, np.ndarray]:
    return dict(zip(index.metadata["video_id"], index.embeddings()))


@pytest.mark.parametrize("kind", ["wds", "parquet"])
def test_shards_give_the_embeddings_of_the_files_they_were_written_from(search_assets, encoder, shards, from_files,
                                                                        kind, tmp_path):  # fmt: skip
    directory = tmp_path / "idx"
    written = []
    report = build_index(shards / kind, directory, encoder=encoder, on_shard_written=written.append, **FAST)
    index = VideoSearchIndex.open(directory, encoder=encoder)
    assert report.num_videos == report.added == len(search_assets.test_ids) and report.input_shards == 3
    assert sorted(index.metadata["video_id"]) == sorted(search_assets.test_ids)
    expected, got = _by_id(from_files), _by_id(index)
    for video_id in search_assets.test_ids:
        np.testing.assert_allclose(got[video_id], expected[video_id], atol=1e-5)
    suffix = "tar" if kind == "wds" else "parquet"
    inputs = [str((shards / kind / f"shard-0000{k}.{suffix}").resolve()) for k in range(3)]
    assert written == [f"run0001-0000{k}-shard-0000{k}" for k in range(3)]  # one index shard per input shard
    info = json.loads((directory / "index.json").read_text())
    assert [s["input_shard"] for s in info["shards"]] == inputs and all(s["complete"] for s in info["shards"])
    assert info["runs"][0]["reader"]["format"] == ("webdataset" if kind == "wds" else "parquet")
    first = index.metadata[0]
    shard, key = first["video"].rsplit("#", 1)
    assert shard == inputs[0] and key  # "<shard url>#<key>"
    files = {r["video_id"]: r for r in from_files.metadata}
    assert first["captions"] == files[first["video_id"]]["captions"]
    assert first["duration"] == pytest.approx(files[first["video_id"]]["duration"])
    hits = index.search(first["captions"][0], k=3)
    assert [h.video_id for h in hits] == [h.video_id for h in from_files.search(first["captions"][0], k=3)]


def _tar_samples(path: Path) -> list[tuple[str, bytes]]:
    import tarfile

    with tarfile.open(path) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]


def test_a_killed_build_resumes_without_redoing_written_shards(search_assets, shards, tmp_path):
    directory = tmp_path / "idx"
    kill_build_after_two_shards(shards / "wds", directory, search_assets.adapter)
    survivors = {p.name: p.stat().st_mtime_ns for p in (directory / "shards").iterdir()}
    assert sorted(survivors) == ["run0001-00000-shard-00000", "run0001-00001-shard-00001"]
    written = []
    report = build_index(
        shards / "wds", directory, adapter=search_assets.adapter, on_shard_written=written.append, **FAST
    )
    assert report.resumed_shards == 2 and written == ["run0001-00002-shard-00002"]  # only the shard not written
    assert {n: (directory / "shards" / n).stat().st_mtime_ns for n in survivors} == survivors
    assert report.num_videos == len(search_assets.test_ids) and not list((directory / "runs").glob("*.json"))
    index = VideoSearchIndex.open(directory)
    assert sorted(index.metadata["video_id"]) == sorted(search_assets.test_ids)


def test_new_shards_are_added_without_reencoding_the_indexed_ones(search_assets, encoder, shards, tmp_path):
    directory = tmp_path / "idx"
    first_two = [shards / "wds" / f"shard-0000{k}.tar" for k in range(2)]
    first = build_index(first_two, directory, encoder=encoder, **FAST)
    assert first.num_videos == 6 and first.input_shards == 2
    old = {p.name: p.stat().st_mtime_ns for p in (directory / "shards").iterdir()}
    old_embeddings = VideoSearchIndex.open(directory).embeddings()
    written = []
    second = build_index(  # the same shards as a brace pattern, plus a third one
        str(shards / "wds" / "shard-{00000..00002}.tar"), directory, encoder=encoder,
        on_shard_written=written.append, **FAST,
    )  # fmt: skip
    assert written == ["run0002-00000-shard-00002"] and second.already_indexed == 6 and second.added == 2
    assert {n: (directory / "shards" / n).stat().st_mtime_ns for n in old} == old
    index = VideoSearchIndex.open(directory)
    np.testing.assert_array_equal(index.embeddings(range(6)), old_embeddings)
    assert sorted(index.metadata["video_id"]) == sorted(search_assets.test_ids)
    third = build_index(shards / "wds", directory, encoder=encoder, **FAST)  # the folder: nothing new
    assert third.added == 0 and third.input_shards == 0 and len(index.info["runs"]) == 2


def test_broken_samples_are_named_by_shard_and_key_and_the_rest_of_the_shard_indexed(
    search_assets, encoder, shards, tmp_path
):
    import tarfile

    members = _tar_samples(shards / "wds" / "shard-00000.tar")
    broken = tmp_path / "broken.tar"
    with tarfile.open(broken, "w") as tar:
        add_member(tar, "aaa_noise.mp4", np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes())
        add_member(tar, "aaa_noise.json", caption_json("noise"))
        for name, data in members:
            add_member(tar, name, data)
        add_member(tar, "zzz_silent.mp4", b"no caption member")
    directory = tmp_path / "idx"
    report = build_index([broken], directory, encoder=encoder, progress=False, decode_timeout=30)  # isolated helper
    url = str(broken.resolve())
    assert sorted(report.failed) == [f"{url}#aaa_noise", f"{url}#zzz_silent"]
    assert "no caption" in report.failed[f"{url}#zzz_silent"] and f"{url}#aaa_noise" in str(report)
    assert report.num_videos == 3 and not report.incomplete_shards  # the shard's 3 good videos
    info = json.loads((directory / "index.json").read_text())
    assert sorted(info["failed"]) == sorted(report.failed) and info["shards"][0]["complete"]
    assert info["shards"][0]["samples"] == 5

    # a shard cut inside a member: what precedes is indexed, the shard is read again by the next call
    cut = tmp_path / "cut" / "shard-00001.tar"
    cut.parent.mkdir()
    whole = (shards / "wds" / "shard-00001.tar").read_bytes()
    cut.write_bytes(whole[: len(whole) // 2])
    partial = build_index([cut], directory, encoder=encoder, **FAST)
    assert partial.incomplete_shards == [str(cut.resolve())] and "INCOMPLETE" in str(partial)
    assert [r.split(" member")[0] for v, r in partial.failed.items() if v.startswith(str(cut.resolve()))] in (
        [["shard ends inside"], ["shard breaks off after"]]
    ), partial.failed  # named by the shard (and the key of the member it ends in)
    kept = partial.num_videos - 3
    assert 0 < kept < 3
    cut.write_bytes(whole)  # the download finished: read again, only the missing videos are encoded
    repaired = build_index([cut], directory, encoder=encoder, **FAST)
    assert repaired.added == 3 - kept and repaired.num_videos == 6 and not repaired.incomplete_shards
    info = json.loads((directory / "index.json").read_text())
    assert sorted(info["failed"]) == [f"{url}#aaa_noise", f"{url}#zzz_silent"]


def test_datasets_holding_bytes_streamed_and_in_memory(search_assets, encoder, shards, from_files, tmp_path):
    import datasets

    expected = _by_id(from_files)
    streamed = datasets.load_dataset(
        "parquet", data_files=sorted(str(p) for p in (shards / "parquet").glob("*.parquet")), split="train",
        streaming=True,
    )  # fmt: skip
    report = build_index(streamed, tmp_path / "streamed", encoder=encoder, **FAST)
    index = VideoSearchIndex.open(tmp_path / "streamed")
    assert report.input_shards == streamed.num_shards == 3 and sorted(expected) == sorted(index.metadata["video_id"])
    for video_id, embedding in _by_id(index).items():
        np.testing.assert_allclose(embedding, expected[video_id], atol=1e-5)

    rows = [json.loads(line) for line in search_assets.manifest.read_text().splitlines() if SPLIT in line]
    rows = [r for r in rows if r["split"] == SPLIT]
    in_memory = datasets.Dataset.from_dict(
        {
            "video": [
                {"bytes": (search_assets.manifest.parent / r["video"]).read_bytes(), "path": None} for r in rows
            ],
            "caption": [r["caption"] for r in rows],
            "video_id": [r["video_id"] for r in rows],
        }
    ).cast_column("video", datasets.Video(decode=False))
    report = build_index(in_memory, tmp_path / "memory", encoder=encoder, **FAST)
    index = VideoSearchIndex.open(tmp_path / "memory")
    assert report.num_videos == len(rows) and index.metadata[0]["video"] == f"dataset#{rows[0]['video_id']}"
    for video_id, embedding in _by_id(index).items():
        np.testing.assert_allclose(embedding, expected[video_id], atol=1e-5)

    tars = sorted(str(p) for p in (shards / "wds").glob("*.tar"))  # datasets' own WebDataset builder, streamed
    builder = datasets.load_dataset("webdataset", data_files=tars, split="train", streaming=True)
    report = build_index(builder, tmp_path / "builder", encoder=encoder, **FAST)
    index = VideoSearchIndex.open(tmp_path / "builder")
    assert report.input_shards == 3 and sorted(index.metadata["video_id"]) == sorted(expected)
    for video_id, embedding in _by_id(index).items():
        np.testing.assert_allclose(embedding, expected[video_id], atol=1e-5)
    assert index.metadata[0]["video"].split("#")[0] in tars  # `__url__#__key__`: pictures read it from the tar


@pytest.fixture(scope="module")
def split_folders(search_assets, tmp_path_factory):
    """The whole world written by `peft-video shard` without --split: one folder of shards per split."""
    root = tmp_path_factory.mktemp("split_shards") / "shards"
    argv = ["shard", str(search_assets.manifest), "--out", str(root), "--max-shard-samples", "3", "--no-progress"]
    assert cli_main(argv) == 0
    return root


def _index_argv(search_assets, source: Path, out: Path, *extra: str) -> list[str]:
    return [
        "index", str(source), "--split", SPLIT, "--out", str(out), "--adapter", str(search_assets.adapter),
        "--batch-size", "2", "--timeout", "0", "--no-progress", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def cli_index(search_assets, split_folders, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "one"
    assert cli_main(_index_argv(search_assets, split_folders, out, "--num-workers", "2")) == 0
    return out


def test_cli_indexes_a_shards_folder_and_searches_it(search_assets, split_folders, cli_index, from_files, capsys):
    index = VideoSearchIndex.open(cli_index)
    assert sorted(index.metadata["video_id"]) == sorted(search_assets.test_ids)
    assert all(s["input_shard"].startswith(str(split_folders / SPLIT)) for s in index.info["shards"])
    expected = _by_id(from_files)
    for video_id, embedding in _by_id(index).items():  # 2 DataLoader workers, one input shard at a time each
        np.testing.assert_allclose(embedding, expected[video_id], atol=1e-5)
    caption = next(r["caption"] for r in search_assets.rows if r["split"] == SPLIT)
    capsys.readouterr()
    assert cli_main(["search", str(cli_index), caption, "-k", "3", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]
    assert [h["video_id"] for h in hits] == [h.video_id for h in from_files.search(caption, k=3)]
    assert all(".tar#" in h["video"] for h in hits)
    assert cli_main(["index", str(split_folders), "--out", str(cli_index.parent / "x")]) == 2  # which split?
    assert "holds the shards of the splits ['test', 'train', 'val']" in capsys.readouterr().err


def test_two_processes_build_the_same_index_as_one(search_assets, split_folders, cli_index, tmp_path):
    out = tmp_path / "two"
    index_with_two_processes(_index_argv(search_assets, split_folders, out), port=29533)
    two, one = VideoSearchIndex.open(out), VideoSearchIndex.open(cli_index)
    assert two.info["runs"][0]["num_processes"] == 2 and one.info["runs"][0]["num_processes"] == 1
    assert two.metadata["video_id"] == one.metadata["video_id"]  # same order: input shard order, not process order
    assert len(set(two.metadata["video_id"])) == len(two) == len(search_assets.test_ids)  # each video once
    assert [s["name"] for s in two.info["shards"]] == [s["name"] for s in one.info["shards"]]
    np.testing.assert_allclose(two.embeddings(), one.embeddings(), atol=1e-5)


@pytest.mark.parametrize("kind", ["wds", "parquet"])
def test_pictures_of_shard_hits_show_the_frames_read_from_the_shard(search_assets, encoder, shards, kind, tmp_path):
    from peft_video.search.app import answer
    from peft_video.search.gallery import contact_sheet, video_strip

    build_index(shards / kind, tmp_path / "idx", encoder=encoder, **FAST)
    index = VideoSearchIndex.open(tmp_path / "idx", encoder=encoder)
    files = {r["video_id"]: search_assets.manifest.parent / r["video"] for r in search_assets.rows}
    hits = index.search(index.metadata[4]["captions"][0], k=3)
    for hit in hits:  # the very frames of the file the shard was written from
        assert "#" in hit.video and not Path(hit.video).exists()
        strip, original = video_strip(hit.video, frames=4, height=48), video_strip(files[hit.video_id], 4, 48)
        np.testing.assert_array_equal(np.asarray(strip), np.asarray(original))
    sheet = contact_sheet("q", hits, tmp_path / "sheet.png", frames=4, height=48)
    of_files = contact_sheet("q", [{**vars(h), "video": str(files[h.video_id])} for h in hits], frames=4, height=48)
    np.testing.assert_array_equal(np.asarray(sheet), np.asarray(of_files))  # the same picture
    image, table, best = answer(index, hits[0].captions[0], 3, tmp_path / "media")  # the web page's answer
    top = index.search(hits[0].captions[0], k=1)[0]
    assert image.height > 3 * 48 and f"`{hits[0].video_id}`" in table
    assert Path(best).parent == tmp_path / "media" and Path(best).read_bytes() == files[top.video_id].read_bytes()
    assert answer(index, hits[0].captions[0], 3)[2] is None  # no folder to play it from: frame strips only
    gone = hits[0].video.replace(kind, "moved")
    grey = np.asarray(video_strip(gone, frames=4, height=48).convert("RGB"))
    assert (np.abs(grey.astype(int) - 200) < 3).all(axis=-1).mean() > 0.5  # a grey strip saying why, no exception


def test_a_video_met_twice_is_indexed_once_with_its_captions(search_assets, encoder, shards, tmp_path, caplog):
    import tarfile

    members = _tar_samples(shards / "wds" / "shard-00000.tar")
    ids = sorted({json.loads(data)["video_id"] for name, data in members if name.endswith(".json")})
    video = {json.loads(data)["video_id"]: name.split(".")[0] for name, data in members if name.endswith(".json")}
    payload = {name: data for name, data in members}
    first, second = tmp_path / "a.tar", tmp_path / "b.tar"
    with tarfile.open(first, "w") as tar:  # caption-per-row: a second row of ids[0] in the same shard ...
        for name, data in members:
            add_member(tar, name, data)
        add_member(tar, "again.mp4", payload[f"{video[ids[0]]}.mp4"])
        add_member(tar, "again.json", caption_json("one more caption", video_id=ids[0]))
    with tarfile.open(second, "w") as tar:  # ... and a row of ids[1] in the next shard
        add_member(tar, "later.mp4", payload[f"{video[ids[1]]}.mp4"])
        add_member(tar, "later.json", caption_json("a later caption", video_id=ids[1]))
    with caplog.at_level("WARNING"):
        report = build_index([first, second], tmp_path / "idx", encoder=encoder, **FAST)
    index = VideoSearchIndex.open(tmp_path / "idx")
    assert report.num_videos == 3 and sorted(index.metadata["video_id"]) == ids  # each video once
    assert index.metadata[index.row_of(ids[0])]["captions"][-1] == "one more caption"
    assert [s["rows"] for s in index.info["shards"]] == [3, 0] and "already indexed are not added twice" in caplog.text


def test_a_shard_that_cannot_be_opened_is_named_and_read_by_the_next_call(encoder, shards, tmp_path):
    import shutil

    missing = tmp_path / "later" / "shard-00001.tar"
    sources = [shards / "wds" / "shard-00000.tar", missing]
    report = build_index(sources, tmp_path / "idx", encoder=encoder, **FAST)
    url = str(missing.resolve())
    assert report.num_videos == 3 and report.incomplete_shards == [url]
    assert list(report.failed) == [url] and report.failed[url].startswith("cannot open shard")
    assert [s["rows"] for s in VideoSearchIndex.open(tmp_path / "idx").info["shards"]] == [3, 0]
    missing.parent.mkdir()
    shutil.copy(shards / "wds" / "shard-00001.tar", missing)
    again = build_index(sources, tmp_path / "idx", encoder=encoder, **FAST)
    assert again.added == 3 and again.input_shards == 1 and not again.incomplete_shards
    assert not VideoSearchIndex.open(tmp_path / "idx").info["failed"]


def test_shards_over_http_are_indexed_and_drawn_from_their_url(search_assets, encoder, shards, from_files, tmp_path):
    from shard_fixtures import http_server

    from peft_video.search.gallery import video_strip

    with http_server(shards) as url:
        report = build_index(f"{url}/wds", tmp_path / "idx", encoder=encoder, **FAST)  # its shards.json, read remotely
        index = VideoSearchIndex.open(tmp_path / "idx")
        assert report.input_shards == 3 and index.metadata[0]["video"].startswith(f"{url}/wds/shard-00000.tar#")
        expected = _by_id(from_files)
        for video_id, embedding in _by_id(index).items():
            np.testing.assert_allclose(embedding, expected[video_id], atol=1e-5)
        files = {r["video_id"]: search_assets.manifest.parent / r["video"] for r in search_assets.rows}
        first = index.metadata[-1]
        strip = np.asarray(video_strip(first["video"], frames=3, height=32))
    np.testing.assert_array_equal(strip, np.asarray(video_strip(files[first["video_id"]], frames=3, height=32)))
