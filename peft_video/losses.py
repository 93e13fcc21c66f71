"""Contrastive loss with negatives gathered from every process, gradients included."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 whose backward returns each process the gradient of its own rows, summed over processes.

    Per-process batches may differ in size (the last batch of an epoch): rows are padded to the largest batch for the
    collective and stripped afterwards. Backward all-reduces the full gradient (works on gloo, which has no
    reduce-scatter) and keeps the local slice. Every process computes the same full loss, so after DDP averages the
    parameter gradients they equal those of one process over the union batch.
    """

    @staticmethod
    def forward(ctx, local: torch.Tensor) -> torch.Tensor:
        world_size, rank = _world()
        sizes = torch.tensor([local.shape[0]], device=local.device)
        all_sizes = [torch.zeros_like(sizes) for _ in range(world_size)]
        dist.all_gather(all_sizes, sizes)
        counts = [int(s.item()) for s in all_sizes]
        max_rows = max(counts)
        padded = local.new_zeros((max_rows, *local.shape[1:]))
        padded[: local.shape[0]] = local
        gathered = [torch.empty_like(padded) for _ in range(world_size)]
        dist.all_gather(gathered, padded.contiguous())
        ctx.counts, ctx.rank = counts, rank
        return torch.cat([g[:n] for g, n in zip(gathered, counts)])

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        start = sum(ctx.counts[: ctx.rank])
        return grad[start : start + ctx.counts[ctx.rank]]


def gather_with_grad(local: torch.Tensor) -> torch.Tensor:
    """Concatenate `local` from every process (rank order), keeping the autograd graph; identity without a process
    group.

    `accelerator.gather` carries no gradient: with it, negatives from other processes would be constants and the loss
    would differ from the single-process one over the same union batch.
    """
    if _world()[0] == 1:
        return local
    return _GatherWithGrad.apply(local)


def symmetric_infonce(logits_per_text: torch.Tensor) -> torch.Tensor:
    """CLIP's loss on a square similarity matrix whose diagonal holds the positives: (CE(S) + CE(Sᵀ)) / 2."""
    if logits_per_text.ndim != 2 or logits_per_text.shape[0] != logits_per_text.shape[1]:
        raise ValueError(f"symmetric_infonce needs a square [N, N] matrix, got shape {tuple(logits_per_text.shape)}.")
    targets = torch.arange(logits_per_text.shape[0], device=logits_per_text.device)
    return (F.cross_entropy(logits_per_text, targets) + F.cross_entropy(logits_per_text.t(), targets)) / 2


def contrastive_loss(text_embeds: torch.Tensor, video_embeds: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE over the text-video pairs of all processes. Inputs are L2-normalised, paired row by row."""
    all_text = gather_with_grad(text_embeds)
    all_video = gather_with_grad(video_embeds)
    return symmetric_infonce(logit_scale * all_text @ all_video.t())
