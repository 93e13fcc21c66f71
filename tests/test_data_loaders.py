"""peft_video.data.loaders.TrainingBatches on hand-made batches (the decoding side and the real Accelerate loaders are
exercised by examples/train.py's tests): which batches are trained on, skipped or refused with one or two processes,
an epoch with nothing to train on is an error, a stream's position is what a checkpoint keeps, and the data report
adds what came before a resume."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from accelerate import PartialState

from peft_video.data.loaders import TrainingBatches


def batch(size: int, errors: tuple[str, ...] = ()) -> dict:
    tensors = {"pixel_values": torch.zeros(size, 2, 3, 4, 4)} if size else {}
    return {"batch_size": size, "errors": [{"video": v, "reason": "unreadable"} for v in errors], **tensors}


class Items:
    epoch = None

    def set_epoch(self, epoch):
        self.epoch = epoch


class Stream(list):
    def state_dict(self):
        return {"read": len(self)}


def accelerator(processes: int = 1):
    PartialState()  # gather_object, on one process: the objects themselves
    return SimpleNamespace(num_processes=processes, process_index=0, device=torch.device("cpu"))


def test_a_stream_trains_on_usable_batches_skips_the_rest_and_counts_them():
    loader = Stream([batch(2), batch(0, ("a.mp4", "b.mp4")), batch(1), batch(3, ("c.mp4",))])
    items, position = Items(), SimpleNamespace(epoch=4, batches_in_epoch=0)
    batches = TrainingBatches(items, loader, accelerator(), streamed=True)
    trained = [b["batch_size"] for b in batches.epoch(position)]
    assert trained == [2, 3] and items.epoch == 4 and position.batches_in_epoch == 4
    assert batches.skipped == {"all_failed": 1, "single_pair": 1}
    assert batches.errors.count == 3
    assert batches.stream_position(position) == {"loader": {"read": 4}, "epoch": 4, "batches": 4}


def test_with_two_processes_a_single_pair_trains_but_an_empty_manifest_batch_is_refused():
    two = TrainingBatches(Items(), [], accelerator(processes=2))
    assert two.usable(batch(1))
    with pytest.raises(RuntimeError, match=r"every sample of a training batch failed.*'x.mp4'.*cannot be skipped"):
        two.usable(batch(0, ("x.mp4",)))
    streamed = TrainingBatches(Items(), Stream(), accelerator(processes=2), streamed=True)
    assert not streamed.usable(batch(0, ("x.mp4",)))  # a stream's processes go through their shards independently
    assert streamed.stream_position(SimpleNamespace(epoch=0, batches_in_epoch=0)) is not None
    assert two.stream_position(SimpleNamespace(epoch=0, batches_in_epoch=0)) is None


def test_an_epoch_with_nothing_to_train_on_is_an_error_naming_what_was_skipped():
    batches = TrainingBatches(Items(), Stream([batch(1), batch(0, ("z.mp4",))]), accelerator(), streamed=True)
    with pytest.raises(RuntimeError, match=r"process 0 could train on no batch of epoch 0: 2 read, skipped"):
        list(batches.epoch(SimpleNamespace(epoch=0, batches_in_epoch=0)))
    empty = TrainingBatches(Items(), Stream(), accelerator(), streamed=True)
    with pytest.raises(RuntimeError, match="its data yielded no sample"):
        list(empty.epoch(SimpleNamespace(epoch=1, batches_in_epoch=0)))


def test_the_report_adds_what_the_run_reported_before_it_was_resumed():
    earlier = {"failed_samples": 2, "unreadable_videos": {"old.mp4": "unreadable"}}
    batches = TrainingBatches(
        Items(), Stream([batch(0, ("new.mp4",)), batch(2)]), accelerator(), streamed=True, earlier_errors=earlier,
        earlier_skipped={"all_failed": 2},
    )  # fmt: skip
    list(batches.epoch(SimpleNamespace(epoch=0, batches_in_epoch=0)))
    errors, skipped = batches.report()
    assert errors.count == 3 and sorted(errors.failures) == ["new.mp4", "old.mp4"]
    assert skipped == {"all_failed": 3}
