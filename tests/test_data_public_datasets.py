"""Benchmark builders on tiny annotation files written in each official format (no real dataset needed)."""

import json
import os
import pickle

import numpy as np
import pytest

from peft_video.cli import main
from peft_video.data import PUBLIC_DATASETS, ManifestError, build_public_dataset, load_manifest, unique_videos


def _touch_videos(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"not decoded by the builders")


@pytest.fixture
def msrvtt(tmp_path):
    anns = tmp_path / "anns"
    anns.mkdir()
    videos = [
        {"video_id": f"video{i}", "split": s, "category": i % 3, "id": i}
        for i, s in enumerate(["train", "train", "validate", "test", "test"])
    ]
    sentences = [
        {"video_id": f"video{i}", "caption": f"caption {j} of video {i}", "sen_id": 10 * i + j}
        for i in range(5)
        for j in range(3)
    ]
    (anns / "MSRVTT_data.json").write_text(json.dumps({"videos": videos, "sentences": sentences}))
    (anns / "MSRVTT_train.9k.csv").write_text("video_id\nvideo0\nvideo1\nvideo2\n")
    (anns / "MSRVTT_train.7k.csv").write_text("video_id\nvideo0\n")
    (anns / "MSRVTT_JSFUSION_test.csv").write_text(
        "key,vid_key,video_id,sentence\nret0,msr7020,video3,a man sings\nret1,msr7021,video4,a dog runs\n"
    )
    _touch_videos(tmp_path / "videos", ["video0.mp4", "video1.mp4", "video3.mp4", "video4.mp4"])  # video2 missing
    return anns, tmp_path / "videos"


def test_msrvtt_splits_and_counts(msrvtt):
    anns, videos = msrvtt
    data, report = build_public_dataset("msrvtt", anns, videos, "test_1k")
    assert data["video_id"] == ["video3", "video4"] and data["caption"] == ["a man sings", "a dog runs"]
    assert report.expected_videos == 1000 and report.found_videos == 2 and not report.complete
    data, report = build_public_dataset("msrvtt", anns, videos, "train_9k")
    assert report.annotated_videos == 3 and report.found_videos == 2 and report.missing_videos == ["video2"]
    assert len(data) == 6 and "expected 9000" in str(report) and "missing videos: video2" in str(report)
    index = unique_videos(data)
    assert index.video_ids == ["video0", "video1"] and index.captions_per_video == [[0, 1, 2], [3, 4, 5]]
    full_test, _ = build_public_dataset("msrvtt", anns, videos, "test_full")
    assert sorted(set(full_test["video_id"])) == ["video3", "video4"] and len(full_test) == 6
    with pytest.raises(ManifestError, match="missing videos: video2"):
        build_public_dataset("msrvtt", anns, videos, "train_9k", missing="raise")


def test_msvd_from_pickled_captions_and_split_lists(tmp_path):
    anns = tmp_path / "anns"
    anns.mkdir()
    raw = {"-4wsuPCjDBc_5_15": [["a", "cat", "plays"], ["a", "kitten", "plays"]], "abc_1_5": [["a", "man"]]}
    (anns / "raw-captions.pkl").write_bytes(pickle.dumps(raw))
    (anns / "test_list.txt").write_text("-4wsuPCjDBc_5_15\nabc_1_5\n")
    _touch_videos(tmp_path / "YouTubeClips", ["-4wsuPCjDBc_5_15.avi", "abc_1_5.avi"])
    data, report = build_public_dataset("msvd", anns, tmp_path / "YouTubeClips", "test")
    assert data["caption"] == ["a cat plays", "a kitten plays", "a man"]
    assert data["video"][0].endswith("-4wsuPCjDBc_5_15.avi") and report.expected_videos == 670


def test_didemo_builds_paragraphs(tmp_path):
    anns = tmp_path / "anns"
    anns.mkdir()
    entries = [
        {"video": "123@N00_456.mov", "description": "a girl jumps. ", "times": [[0, 0]]},
        {"video": "123@N00_456.mov", "description": "she lands", "times": [[1, 1]]},
        {"video": "789@N01_1.avi", "description": "a car turns", "times": [[2, 2]]},
    ]
    (anns / "test_data.json").write_text(json.dumps(entries))
    _touch_videos(tmp_path / "videos", ["123@N00_456.mp4", "789@N01_1.mp4"])  # converted to mp4, as usual
    data, report = build_public_dataset("didemo", anns, tmp_path / "videos", "test")
    assert data["caption"] == ["a girl jumps. she lands", "a car turns"]
    assert data["sentences"] == [2, 1] and report.expected_videos == 1004 and report.found_videos == 2


def test_didemo_groups_one_video_named_with_two_extensions(tmp_path):
    # The official val/test files name some videos twice, as in these entries of val_data.json's pattern: x.mov and
    # x.mp4, or x. and x.mp4. One video each: the published counts (1065 val, 1004 test videos) group by id.
    anns = tmp_path / "anns"
    anns.mkdir()
    entries = [
        {"video": "33234611@N00_3567949618_0bee41c6f7.mov", "description": "a man waves", "times": [[0, 0]]},
        {"video": "48355633@N00_2462089413_7a5ef6b4e6.", "description": "a dog sits", "times": [[1, 1]]},
        {"video": "33234611@N00_3567949618_0bee41c6f7.mp4", "description": "he stops", "times": [[2, 2]]},
        {"video": "48355633@N00_2462089413_7a5ef6b4e6.mp4", "description": "it barks", "times": [[3, 3]]},
        {"video": "10000000@N00_1.avi", "description": "a car turns", "times": [[4, 4]]},
    ]
    (anns / "val_data.json").write_text(json.dumps(entries))
    on_disk = [
        "33234611@N00_3567949618_0bee41c6f7.mp4",
        "48355633@N00_2462089413_7a5ef6b4e6.mp4",
        "10000000@N00_1.avi",
    ]
    _touch_videos(tmp_path / "videos", on_disk)
    data, report = build_public_dataset("didemo", anns, tmp_path / "videos", "val")
    assert report.annotated_videos == 3 and report.found_videos == 3 and report.expected_videos == 1065
    assert data["video_id"] == [
        "33234611@N00_3567949618_0bee41c6f7",
        "48355633@N00_2462089413_7a5ef6b4e6",
        "10000000@N00_1",
    ]
    assert data["caption"] == ["a man waves he stops", "a dog sits it barks", "a car turns"]
    assert data["sentences"] == [2, 2, 1]


def test_activitynet_paragraphs_with_or_without_v_prefix(tmp_path):
    anns = tmp_path / "anns"
    anns.mkdir()
    data = {
        "v_QOlSCBRmfWY": {
            "duration": 82.7,
            "timestamps": [[0, 10], [10, 20]],
            "sentences": ["A woman dances. ", "She bows."],
        },
        "v_ehGHCYKzyZ8": {"duration": 61.7, "timestamps": [[0, 5]], "sentences": ["A man runs."]},
    }
    (anns / "val_1.json").write_text(json.dumps(data))
    _touch_videos(tmp_path / "v", ["v_QOlSCBRmfWY.mp4", "ehGHCYKzyZ8.mkv"])
    built, report = build_public_dataset("activitynet", anns, tmp_path / "v", "val_1")
    assert built["caption"] == ["A woman dances. She bows.", "A man runs."]
    assert built["video"][1].endswith("ehGHCYKzyZ8.mkv") and report.expected_captions == 4917


def test_lsmdc_tab_separated_with_movie_folders(tmp_path):
    anns = tmp_path / "anns"
    anns.mkdir()
    lines = [
        "0001_American_Beauty_00.00.51.926-00.00.54.129\t00.00.51.926\t00.00.54.129\t00.00.51.926\t"
        "00.00.54.129\tSOMEONE walks.",
        "0002_Movie_00.01.00.000-00.01.02.000\t0\t0\t0\t0\tSOMEONE smiles.",
    ]
    (anns / "LSMDC16_challenge_1000_publictect.csv").write_text("\n".join(lines) + "\n")
    _touch_videos(
        tmp_path / "clips",
        [
            "0001_American_Beauty/0001_American_Beauty_00.00.51.926-00.00.54.129.avi",
            "0002_Movie/0002_Movie_00.01.00.000-00.01.02.000.avi",
        ],
    )
    data, report = build_public_dataset("lsmdc", anns, tmp_path / "clips", "test")
    assert data["caption"] == ["SOMEONE walks.", "SOMEONE smiles."]
    assert data["movie"] == ["0001_American_Beauty", "0002_Movie"] and report.found_videos == 2
    (anns / "LSMDC16_annos_val.csv").write_text("only\ttwo\n")
    with pytest.raises(ManifestError, match="line 1 has 2 tab-separated fields"):
        build_public_dataset("lsmdc", anns, tmp_path / "clips", "val")


def _vatex_annotations(anns, ids_val, ids_train=("train_clip_000001_000011",)):
    anns.mkdir(exist_ok=True)
    val = [{"videoID": i, "enCap": [f"{i} caption {k}" for k in range(2)], "chCap": ["zh"]} for i in ids_val]
    train = [{"videoID": i, "enCap": ["a train caption"], "chCap": ["zh"]} for i in ids_train]
    (anns / "vatex_validation_v1.0.json").write_text(json.dumps(val))
    (anns / "vatex_training_v1.0.json").write_text(json.dumps(train))


def test_vatex_retrieval_split_beside_the_official_one(tmp_path):
    anns, videos = tmp_path / "anns", tmp_path / "vids"
    ids = [f"clip{k}_000000_000010" for k in range(6)]
    _vatex_annotations(anns, ids)
    # HGR's halves, as the split lists of CLIP4Clip-derived code ship them (not in the official file's order)
    (anns / "val_list.txt").write_text("\n".join([ids[4], ids[0], ids[2]]) + "\n")
    (anns / "test_list.txt").write_text("\n".join([ids[5], ids[1], ids[3]]) + "\n")
    _touch_videos(videos, [f"{i}.mp4" for i in ids] + ["train_clip_000001_000011.mp4"])
    official, report = build_public_dataset("vatex", anns, videos, "val")
    assert len(set(official["video_id"])) == 6 and report.expected_videos == 3000
    hgr_val, report = build_public_dataset("vatex", anns, videos, "hgr_val")
    assert list(dict.fromkeys(hgr_val["video_id"])) == [ids[4], ids[0], ids[2]]  # list order
    assert hgr_val["caption"][:2] == [f"{ids[4]} caption 0", f"{ids[4]} caption 1"]
    assert (report.expected_videos, report.expected_captions) == (1500, 15000)
    hgr_test, report = build_public_dataset("vatex", anns, videos, "hgr_test")
    assert list(dict.fromkeys(hgr_test["video_id"])) == [ids[5], ids[1], ids[3]] and report.expected_videos == 1500
    assert not set(hgr_val["video_id"]) & set(hgr_test["video_id"])
    train, report = build_public_dataset("vatex", anns, videos, "train")
    assert train["video_id"] == ["train_clip_000001_000011"] and report.expected_videos == 25991
    # HGR's own release: numpy arrays of names
    (anns / "test_list.txt").unlink()
    np.save(anns / "tst_names.npy", np.array([ids[3], ids[1]]))
    assert build_public_dataset("vatex", anns, videos, "hgr_test")[0]["video_id"][::2] == [ids[3], ids[1]]
    (anns / "val_list.txt").write_text("not_a_validation_clip\n")
    with pytest.raises(ManifestError, match="val_list.txt: 1 video id.*not in vatex_validation_v1.0.json"):
        build_public_dataset("vatex", anns, videos, "hgr_val")


def test_every_benchmark_says_which_video_to_text_protocol_papers_report(msrvtt):
    from peft_video.metrics import VIDEO_TO_TEXT_PROTOCOLS

    for spec in PUBLIC_DATASETS.values():
        assert spec.video_to_text_protocol == "clip4clip" and spec.video_to_text_protocol in VIDEO_TO_TEXT_PROTOCOLS
    anns, videos = msrvtt
    data, _ = build_public_dataset("msrvtt", anns, videos, "test_1k")
    assert set(data["benchmark"]) == {"msrvtt"}  # a manifest remembers which benchmark it is


def test_vatex_english_captions(tmp_path):
    anns = tmp_path / "anns"
    anns.mkdir()
    entries = [{"videoID": "Ptf_2VRj-V0_000122_000132", "enCap": [f"en {i}" for i in range(10)], "chCap": ["zh"]}]
    (anns / "vatex_validation_v1.0.json").write_text(json.dumps(entries))
    _touch_videos(tmp_path / "vids", ["Ptf_2VRj-V0_000122_000132.mp4"])
    data, report = build_public_dataset("vatex", anns, tmp_path / "vids", "val")
    assert len(data) == 10 and report.captions == 10 and report.expected_captions == 30000


def test_builder_errors_name_what_is_wrong(msrvtt, tmp_path):
    anns, videos = msrvtt
    with pytest.raises(ValueError, match="unknown benchmark 'hmdb'"):
        build_public_dataset("hmdb", anns, videos, "test")
    with pytest.raises(ValueError, match="no split 'test'"):
        build_public_dataset("msrvtt", anns, videos, "test")
    with pytest.raises(FileNotFoundError, match="MSRVTT_data.json not found"):
        build_public_dataset("msrvtt", tmp_path, videos, "train_full")
    with pytest.raises(FileNotFoundError, match="video folder not found"):
        build_public_dataset("msrvtt", anns, tmp_path / "nope", "test_1k")
    assert set(PUBLIC_DATASETS) == {"msrvtt", "msvd", "didemo", "activitynet", "lsmdc", "vatex"}


def test_benchmark_command_writes_a_loadable_manifest(msrvtt, tmp_path, capsys):
    anns, videos = msrvtt
    out = tmp_path / "test_1k.csv"
    assert (
        main(
            [
                "benchmark",
                "msrvtt",
                "--split",
                "test_1k",
                "--annotations",
                str(anns),
                "--videos",
                str(videos),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "expected 1000" in capsys.readouterr().out
    assert load_manifest(out)["video_id"] == ["video3", "video4"]
    assert (
        main(
            [
                "benchmark",
                "msrvtt",
                "--split",
                "train_9k",
                "--annotations",
                str(anns),
                "--videos",
                str(videos),
                "--out",
                str(out),
                "--strict",
            ]
        )
        == 2
    )


def test_benchmark_manifest_written_elsewhere_points_at_the_videos(msrvtt, tmp_path, monkeypatch, capsys):
    anns, videos = msrvtt
    monkeypatch.chdir(tmp_path)  # --videos relative to the working directory, --out in another folder
    out = tmp_path / "manifests" / "msrvtt" / "test_1k.csv"
    argv = ["benchmark", "msrvtt", "--split", "test_1k", "--annotations", "anns", "--videos", "videos"]
    assert main([*argv, "--out", os.path.relpath(out, tmp_path)]) == 0
    capsys.readouterr()
    assert "../../videos/video3.mp4" in out.read_text()  # relative to the manifest's folder
    monkeypatch.chdir(out.parent)
    data = load_manifest(out, check_files=True)  # every video found from the manifest's own folder
    assert [os.path.basename(v) for v in data["video"]] == ["video3.mp4", "video4.mp4"]
