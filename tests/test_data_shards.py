"""Shards: the writer (`write_shards`, `peft-video shard`), the readers (WebDataset tar, Parquet, any `datasets`
dataset; local, globbed, brace-expanded and over HTTP), and bad shards read on past every broken sample."""

import json
import os
import tarfile

import datasets
import pytest
from shard_fixtures import caption_json, http_server, write_tar, write_video_manifest
from video_fixtures import write_random_bytes, write_video

from peft_video.cli import main as cli_main
from peft_video.data import load_manifest
from peft_video.data.shard_writer import group_videos, parse_size, write_shards
from peft_video.data.shards import (
    dataset_samples,
    expand_shards,
    open_shards,
    parquet_samples,
    shard_index,
    split_member_name,
    webdataset_samples,
)

EXTRA = {1: ["the second caption of video 1"], 4: ["video 4 again", "video 4 once more"]}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return write_video_manifest(tmp_path_factory.mktemp("shards"), count=6, extra_captions=EXTRA)


@pytest.fixture(scope="module")
def files(manifest):
    """video_id -> (bytes of the file, its captions)."""
    data = load_manifest(manifest)
    return {s.video_id: (open(s.video, "rb").read(), s.captions) for s in group_videos(data)}


def _by_id(rows):
    return {row["video_id"]: row for row in rows}


@pytest.mark.parametrize("format", ["webdataset", "parquet"])
def test_written_shards_read_back_every_video_with_all_its_captions(manifest, files, tmp_path, format):
    report = write_shards(load_manifest(manifest), tmp_path, format=format, max_shard_samples=2)
    index = shard_index(tmp_path)
    assert index == json.loads((tmp_path / "shards.json").read_text()) == report.index
    assert [s["name"] for s in index["shards"]] == [f"shard-0000{i}.{'tar' if format == 'webdataset' else 'parquet'}"
                                                   for i in range(3)]  # fmt: skip
    assert [s["samples"] for s in index["shards"]] == [2, 2, 2]
    assert (index["num_samples"], index["num_captions"]) == (6, 9)
    assert not list(tmp_path.glob("*.partial"))
    rows = list(open_shards(tmp_path))
    assert [r["error"] for r in rows] == [None] * 6
    got = _by_id(rows)
    assert sorted(got) == sorted(files)
    for video_id, (data, captions) in files.items():
        assert got[video_id]["video"] == data
        assert got[video_id]["captions"] == captions
        assert got[video_id]["shard"].startswith(str(tmp_path))
    assert got["v4"]["captions"] == ["video 4", "video 4 again", "video 4 once more"]


def test_webdataset_members_follow_video2dataset_layout(manifest, tmp_path):
    write_shards(load_manifest(manifest), tmp_path, format="webdataset")
    with tarfile.open(tmp_path / "shard-00000.tar") as tar:
        names = tar.getnames()
        record = json.loads(tar.extractfile("v1.json").read())
        text = tar.extractfile("v1.txt").read().decode()
    assert names[:3] == ["v0.mp4", "v0.json", "v0.txt"]
    assert record["captions"] == ["video 1", "the second caption of video 1"] and record["caption"] == "video 1"
    assert record["video_id"] == "v1" and record["split"] == "train" and text == "video 1"


def test_datasets_own_webdataset_loader_reads_our_shards(manifest, files, tmp_path):
    # An outside reader: `datasets`' webdataset builder. It types .mp4 as a torchcodec-decoding Video(); with
    # decode(False) the value is {"bytes", "path"}, and dataset_samples turns its rows into ours.
    write_shards(load_manifest(manifest), tmp_path, format="webdataset", max_shard_samples=3)
    stream = datasets.load_dataset("webdataset", data_files=str(tmp_path / "*.tar"), split="train", streaming=True)
    assert isinstance(stream.features["mp4"], datasets.Video) and stream.features["mp4"].decode
    assert stream.features["txt"] == datasets.Value("string")
    raw = next(iter(stream.decode(False)))
    assert set(raw["mp4"]) == {"bytes", "path"} and raw["mp4"]["bytes"] == files[raw["__key__"]][0]
    ours = _by_id(open_shards(tmp_path))
    theirs = _by_id(
        dataset_samples(
            stream,
            video_column="mp4",
            caption_column="json.captions",
            key_column="__key__",
            shard_column="__url__",
            video_id_column="__key__",
        )
    )
    assert sorted(theirs) == sorted(ours)
    for video_id, row in ours.items():
        assert {k: theirs[video_id][k] for k in ("key", "video", "captions", "error")} == {
            k: row[k] for k in ("key", "video", "captions", "error")
        }
        assert theirs[video_id]["shard"] == row["shard"]


def test_datasets_parquet_loader_sees_a_video_column_in_our_parquet_shards(manifest, files, tmp_path):
    write_shards(load_manifest(manifest), tmp_path, format="parquet", max_shard_samples=4)
    stream = datasets.load_dataset("parquet", data_files=str(tmp_path / "*.parquet"), split="train", streaming=True)
    assert isinstance(stream.features["video"], datasets.Video)
    assert stream.features["captions"] == datasets.List(datasets.Value("string"))
    # Streamed (Hub-style Video column holding bytes) and map-style (Arrow on disk, read lazily) through one adapter.
    local = datasets.load_dataset("parquet", data_files=str(tmp_path / "*.parquet"), split="train")
    for source in (stream, local):
        rows = _by_id(dataset_samples(source, caption_column="captions", key_column="key", video_id_column="video_id"))
        assert sorted(rows) == sorted(files)
        assert all(rows[v]["video"] == files[v][0] and rows[v]["captions"] == files[v][1] for v in files)


def test_dataset_samples_accepts_raw_bytes_and_path_columns(files, manifest):
    data = load_manifest(manifest)
    first = {row["video_id"]: row for row in data}
    table = datasets.Dataset.from_dict(
        {
            "clip": [files["v0"][0], files["v2"][0], b""],
            "text": ["zero", "two", "empty"],
            "name": ["a", "b", "c"],
        }
    )
    rows = list(dataset_samples(table, video_column="clip", caption_column="text", key_column="name", name="mine"))
    assert [r["video"] == files[v][0] for r, v in zip(rows[:2], ("v0", "v2"))] == [True, True]
    assert (rows[2]["shard"], rows[2]["key"], rows[2]["video"]) == ("mine", "c", b"")  # decoding will name it
    paths = datasets.Dataset.from_dict({"video": [first["v3"]["video"]], "caption": ["three"]})
    (row,) = list(dataset_samples(paths))
    assert row["video"] is None and row["path"] == first["v3"]["video"] and row["key"] == "row0"
    with pytest.raises(ValueError, match="no column 'movie'"):
        dataset_samples(table, video_column="movie", caption_column="text")


def test_member_names_split_like_datasets_and_webdataset():
    from datasets.packaged_modules.webdataset.webdataset import base_plus_ext

    for name in ["a.mp4", "dir/b.c.json", "x/y/clip_01.seg.TXT", "noext", "dir.d/e.mp4", ".hidden"]:
        key, extension = split_member_name(name)
        theirs = base_plus_ext(name)
        assert (key, extension) == (theirs[0], (theirs[1] or "").lower())


def _healthy(key, video_bytes, caption):
    return {"__key__": key, "mp4": video_bytes, "json": caption_json(caption)}


def test_bad_samples_are_named_and_the_rest_of_each_shard_is_read(files, tmp_path):
    video = files["v0"][0]
    bad = write_tar(
        tmp_path / "bad.tar",
        [
            _healthy("a", video, "first"),
            {"__key__": "no_caption", "mp4": video},
            {"__key__": "no_video", "json": caption_json("lonely caption")},
            {"__key__": "not_video", "mp4": write_random_bytes(tmp_path / "r").read_bytes(), "txt": b"noise"},
            {"__key__": "bad_json", "mp4": video, "json": b"{not json"},
            _healthy("b", video, "second"),
        ],
    )
    whole = write_tar(tmp_path / "whole.tar", [_healthy(f"w{i}", video, f"w {i}") for i in range(4)]).read_bytes()
    cut = whole.find(b"w2.mp4")  # the header of w2's video member
    inside = tmp_path / "cut_inside.tar"
    inside.write_bytes(whole[: cut + 512 + len(video) // 2])  # w2's video member breaks off
    between = tmp_path / "cut_between.tar"
    between.write_bytes(whole[:cut])  # ends cleanly after w1.json, without tar's end blocks
    not_tar = write_random_bytes(tmp_path / "noise.tar", size=3000)
    rows = list(webdataset_samples([str(p) for p in (bad, inside, between, not_tar, tmp_path / "gone.tar", bad)]))
    table = [(os.path.basename(r["shard"]), r["key"], r["error"]) for r in rows]
    ok = [(shard, key) for shard, key, error in table if error is None]
    assert ok == [("bad.tar", "a"), ("bad.tar", "not_video"), ("bad.tar", "b")] + [
        ("cut_inside.tar", "w0"), ("cut_inside.tar", "w1"), ("cut_between.tar", "w0"), ("cut_between.tar", "w1"),
        ("bad.tar", "a"), ("bad.tar", "not_video"), ("bad.tar", "b"),
    ]  # fmt: skip
    errors = {(shard, key): error for shard, key, error in table if error is not None}
    assert errors[("bad.tar", "no_caption")].startswith("no caption in 'auto' (members: mp4)")
    assert errors[("bad.tar", "no_video")].startswith("no video member (members: json)")
    assert errors[("bad.tar", "bad_json")].startswith("unreadable caption member: JSONDecodeError")
    assert errors[("cut_inside.tar", "w2")].startswith("shard ends inside member 'w2.mp4'")
    assert errors[("cut_between.tar", "")].startswith("shard breaks off after member 'w1.json'")
    assert errors[("noise.tar", "")].startswith("not a tar archive")
    assert errors[("gone.tar", "")].startswith("cannot open shard: FileNotFoundError")
    # bytes that are not a video pass the reader (it does not decode): the stream dataset names them when decoding
    assert len(rows) == 6 + 3 + 3 + 1 + 1 + 6  # every sample of every shard, once


@pytest.mark.parametrize(
    "field, expected",
    [
        ("auto", ["j1", "j2"]),
        ("txt", ["line one\nline two"]),
        ("txt:lines", ["line one", "line two"]),
        ("json:captions", ["j1", "j2"]),
        ("json:meta.caption", ["nested"]),
    ],
)
def test_caption_fields(files, tmp_path, field, expected):
    shard = write_tar(
        tmp_path / "c.tar",
        [
            {
                "__key__": "k",
                "mp4": files["v0"][0],
                "txt": b"line one\nline two",
                "json": caption_json("j1", "j2", meta={"caption": "nested"}),
            }
        ],
    )
    (row,) = list(webdataset_samples(str(shard), caption_field=field))
    assert row["captions"] == expected and row["error"] is None
    with pytest.raises(ValueError, match="unknown caption field"):
        webdataset_samples(str(shard), caption_field="csv")


def test_parquet_reader_names_bad_rows_and_unreadable_files(files, manifest, tmp_path):
    write_shards(load_manifest(manifest), tmp_path / "ok", format="parquet")
    good = tmp_path / "ok" / "shard-00000.parquet"
    truncated = tmp_path / "truncated.parquet"
    truncated.write_bytes(good.read_bytes()[:-100])
    raw = datasets.Dataset.from_dict({"video": [files["v0"][0], None], "captions": [["x"], ["y"]]})
    raw.to_parquet(str(tmp_path / "raw.parquet"))
    rows = list(parquet_samples([str(truncated), str(tmp_path / "raw.parquet"), str(good)]))
    assert os.path.basename(rows[0]["shard"]) == "truncated.parquet" and rows[0]["key"] == "row0"
    assert rows[0]["error"].startswith("cannot open shard")
    assert (rows[1]["key"], rows[1]["error"]) == ("row0", None) and rows[1]["video"] == files["v0"][0]
    assert (rows[2]["key"], rows[2]["error"]) == ("row1", "no video in column 'video'")
    assert [r["video_id"] for r in rows[3:]] == [f"v{i}" for i in range(6)]


def test_shard_lists_expand_braces_and_globs(tmp_path):
    for i in range(3):
        (tmp_path / f"s-{i:03d}.tar").write_bytes(b"")
    assert expand_shards(str(tmp_path / "s-{000..002}.tar")) == [str(tmp_path / f"s-{i:03d}.tar") for i in range(3)]
    assert expand_shards(str(tmp_path / "s-*.tar")) == [str(tmp_path / f"s-{i:03d}.tar") for i in range(3)]
    assert expand_shards(["a-{8..10}.tar", "b.tar"]) == ["a-8.tar", "a-9.tar", "a-10.tar", "b.tar"]
    with pytest.raises(FileNotFoundError, match="no shard matches"):
        expand_shards(str(tmp_path / "none-*.tar"))


@pytest.mark.parametrize("format", ["webdataset", "parquet"])
def test_shards_stream_over_http(manifest, files, tmp_path, format):
    write_shards(load_manifest(manifest), tmp_path / "train", format=format, max_shard_samples=4)
    with http_server(tmp_path) as url:
        rows = _by_id(open_shards(f"{url}/train"))
        if format == "webdataset":
            braces = list(webdataset_samples(f"{url}/train/shard-{{00000..00001}}.tar"))
            assert sorted(r["video_id"] for r in braces) == sorted(files)
    assert sorted(rows) == sorted(files) and all(rows[v]["video"] == files[v][0] for v in files)
    assert all(r["shard"].startswith("http://127.0.0.1:") for r in rows.values())


def test_writer_splits_by_size_shuffles_and_records_failures(manifest, tmp_path):
    data = load_manifest(manifest)
    sizes = [os.path.getsize(s.video) for s in group_videos(data)]
    limit = max(sizes) * 2 + 3 * 4096
    report = write_shards(data, tmp_path / "a", max_shard_size=limit, shuffle_seed=3)
    shards = report.index["shards"]
    assert len(shards) >= 2 and sum(s["samples"] for s in shards) == 6
    assert all(s["bytes"] <= limit + tarfile.RECORDSIZE for s in shards)  # + end-of-archive blocks and padding
    one_each = write_shards(data, tmp_path / "tiny", max_shard_size=1)  # a video larger than the limit: its own shard
    assert [s["samples"] for s in one_each.index["shards"]] == [1] * 6
    write_shards(data, tmp_path / "b", max_shard_size=limit, shuffle_seed=3)
    assert (tmp_path / "a" / "shard-00000.tar").read_bytes() == (tmp_path / "b" / "shard-00000.tar").read_bytes()
    order = [r["video_id"] for r in open_shards(tmp_path / "a")]
    assert sorted(order) == [f"v{i}" for i in range(6)] and order != sorted(order)
    rows = [dict(r) for r in data] + [
        {**dict(data[0]), "video": str(tmp_path / "missing.mp4"), "video_id": "gone"},
        {**dict(data[0]), "video": str(write_video(tmp_path / "blank.mp4")), "video_id": "blank", "caption": " "},
    ]
    report = write_shards(datasets.Dataset.from_list(rows), tmp_path / "c")
    assert set(report.failed) == {str(tmp_path / "missing.mp4"), str(tmp_path / "blank.mp4")}
    assert report.failed[str(tmp_path / "blank.mp4")] == "no non-empty caption"
    assert report.index["num_samples"] == 6 and "FAILED" in report.summary()


def test_writer_reencodes_with_preprocess_settings_and_records_them(manifest, tmp_path):
    from peft_video.data import FrameSampling, decode_frames

    preprocess = {"fps": 4.0, "short_side": 32, "codec": "libx264", "crf": 23}
    report = write_shards(load_manifest(manifest), tmp_path, format="webdataset", preprocess=preprocess)
    assert report.index["preprocess"] == preprocess
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".reencode")]
    with tarfile.open(tmp_path / "shard-00000.tar") as tar:
        record = json.loads(tar.extractfile("v0.json").read())
        video = tar.extractfile("v0.mp4").read()
    assert record["preprocess"]["height"] == 32 and record["preprocess"]["width"] == 42  # 64x48 -> even sides
    assert record["preprocess"]["fps"] == 4.0
    decoded = decode_frames(video, FrameSampling(num_frames=2), name="v0")
    assert tuple(decoded.frames.shape[1:3]) == (32, 42)


def test_cli_writes_one_folder_per_split_or_the_chosen_split(manifest, tmp_path):
    data = load_manifest(manifest)
    rows = [{**dict(r), "split": "test" if r["video_id"] in ("v0", "v5") else "train"} for r in data]
    for row in rows:
        row["video"] = os.path.relpath(row["video"], manifest.parent)
    from peft_video.data import write_manifest

    two = write_manifest(rows, manifest.parent / "two_splits.jsonl", relative_to_manifest=False)
    assert cli_main(["shard", str(two), "--out", str(tmp_path / "all"), "--no-progress", "--format", "parquet"]) == 0
    assert shard_index(tmp_path / "all" / "train")["num_samples"] == 4
    assert shard_index(tmp_path / "all" / "test")["num_samples"] == 2
    code = cli_main(
        ["shard", str(two), "--split", "test", "--out", str(tmp_path / "t"), "--no-progress", "--max-shard-size", "1k"]
    )
    assert code == 0 and len(shard_index(tmp_path / "t")["shards"]) == 2


def test_open_shards_without_an_index_says_how_to_read_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no shards.json in .*webdataset_samples\("):
        open_shards(tmp_path)


def test_sizes_parse():
    assert parse_size("512MB") == 512 * 10**6 and parse_size("1GiB") == 2**30 and parse_size("100k") == 102400
    assert parse_size(7) == 7 and parse_size("1.5 KB") == 1500
    with pytest.raises(ValueError, match="cannot read size"):
        parse_size("lots")


def test_video2dataset_output_layouts_are_read(files, tmp_path):
    # video2dataset's writers (data_writer.py): a tar of {key}.mp4, {key}.txt (the caption, "" when missing) and
    # {key}.json (the input row's other columns, indented, no caption), keys like 000010005; its Parquet output has
    # columns key, mp4 (binary), txt and the metadata.
    import pyarrow as pa
    import pyarrow.parquet as pq

    meta = {"url": "https://example.com/a.mp4", "status": "success", "error_message": None, "duration": 1.0}
    samples = [
        {
            "__key__": "000010000",
            "mp4": files["v0"][0],
            "txt": b"a dog runs",
            "json": json.dumps(meta, indent=4).encode(),
        },
        {"__key__": "000010001", "mp4": files["v1"][0], "txt": b"", "json": json.dumps(meta, indent=4).encode()},
    ]
    rows = list(webdataset_samples(str(write_tar(tmp_path / "00001.tar", samples))))
    assert (rows[0]["key"], rows[0]["captions"], rows[0]["error"]) == ("000010000", ["a dog runs"], None)
    assert rows[0]["video"] == files["v0"][0] and rows[0]["video_id"] == "000010000"
    assert rows[1]["error"].startswith("no caption")
    table = pa.table(
        {"key": ["000020000"], "mp4": [files["v2"][0]], "txt": ["a cat sleeps"], "url": ["https://example.com/b"]}
    )
    pq.write_table(table, tmp_path / "00002.parquet")
    (row,) = list(parquet_samples(str(tmp_path / "00002.parquet"), video_column="mp4", caption_column="txt"))
    assert (row["key"], row["captions"], row["video"], row["error"]) == (
        "000020000", ["a cat sleeps"], files["v2"][0], None,
    )  # fmt: skip
