"""Configuration of DGL (Yang et al., AAAI 2024): dynamic global-local prompt tuning of a frozen CLIP."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from peft.utils import PeftType

from ...config import VideoAdapterConfig

LATENT_SPACES = ("transformer", "linear")
VISUAL_OUTPUTS = ("global_prompt0", "mean_global_prompts", "mean_frame_cls", "mean_global_prompts_and_frame_cls")


@dataclass
class DGLConfig(VideoAdapterConfig):
    """
    DGL prompts both frozen encoders at every layer ("deep", replaced before each layer) with prompts produced by one
    shared generator, and adds global prompt tokens that attend to every frame while each frame attends only to itself
    and the global prompts. Defaults are the reference implementation's (knightyxp/DGL) MSR-VTT setting; see
    docs/methods/dgl.md.

    Args:
        latent_space (`str`):
            The prompt generator. `"transformer"` (DGL, the reference's default): a table of latent tokens per layer,
            `num_text_latents + num_local_prompts * num_frames` of them, mixed by one shared pre-LN transformer block
            (text and frame latents of a layer attend to each other; layers do not mix); text prompts are an MLP of
            the first `num_text_prompts` outputs, frame t gets its own `num_local_prompts` outputs. `"linear"`
            (DGL-Linear): `num_local_prompts` frame prompts per layer shared by every frame, and text prompts that are
            a linear map of those same tensors; the video embedding is then exactly invariant to frame order.
        num_text_prompts (`int`):
            Prompt tokens inserted after SOT in the text encoder (replaced before every layer). A caption of L tokens
            then needs `num_text_prompts + L` text positions.
        num_local_prompts (`int`):
            Prompt tokens inserted after each frame's CLS token (replaced before every layer).
        num_global_prompts (`int`):
            Global prompt tokens per video: inserted once before the first vision layer and carried through all
            layers; they attend to every token of every real frame, and every frame attends to them.
        num_text_latents (`int`):
            `"transformer"` only: latent tokens per layer that feed the text side of the generator. Only the first
            `num_text_prompts` outputs become text prompts, but all of them are keys and values of the generator's
            attention, so they shape every prompt (the reference has 8 and uses 4).
        visual_output (`str`):
            The video embedding, read after `post_layernorm` and `visual_projection` of the last layer:
            `"global_prompt0"` (the first global prompt; the reference's default), `"mean_global_prompts"`,
            `"mean_frame_cls"` (over real frames) or `"mean_global_prompts_and_frame_cls"` (the global prompts and the
            real frames' CLS tokens, all weighted equally). At initialisation `"global_prompt0"` is nearly the same
            vector for every video (a random token through frozen layers); on a small CLIP with a short budget it stays
            far below zero-shot, while `"mean_frame_cls"` starts near mean pooling (docs/methods/dgl.md, "On the
            offline world").
        temporal_embedding (`bool`):
            Not in the reference (off by default; with it off the computation is the reference's). A learnable
            embedding per frame index, `[num_frames, vision width]`, zero at init, added to every token of frame t
            before the first vision layer, so that the global prompts see which frame a token comes from. Without
            it DGL sees frame order only through each frame's own local prompts (see docs/methods/dgl.md, which
            gives its measured effect on the offline world).
    """

    latent_space: Literal["transformer", "linear"] = field(
        default="transformer", metadata={"help": f"Prompt generator, one of {LATENT_SPACES}."}
    )
    num_text_prompts: int = field(default=4, metadata={"help": "Text prompt tokens after SOT, at every layer."})
    num_local_prompts: int = field(
        default=4, metadata={"help": "Local prompt tokens per frame after its CLS, at every layer."}
    )
    num_global_prompts: int = field(default=4, metadata={"help": "Global prompt tokens per video."})
    num_text_latents: int = field(
        default=8, metadata={"help": "Text-side latent tokens of the transformer generator (>= num_text_prompts)."}
    )
    visual_output: str = field(
        default="global_prompt0", metadata={"help": f"Video embedding readout, one of {VISUAL_OUTPUTS}."}
    )
    temporal_embedding: bool = field(
        default=False,
        metadata={"help": "Add a learnable per-frame-index embedding to frame tokens (not in the reference)."},
    )

    def __post_init__(self) -> None:
        self.peft_type = PeftType.DGL
        super().__post_init__()
        if self.latent_space not in LATENT_SPACES:
            raise ValueError(f"latent_space must be one of {LATENT_SPACES}, got {self.latent_space!r}.")
        if self.visual_output not in VISUAL_OUTPUTS:
            raise ValueError(f"visual_output must be one of {VISUAL_OUTPUTS}, got {self.visual_output!r}.")
        for name in ("num_text_prompts", "num_local_prompts", "num_global_prompts", "num_text_latents"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        if self.latent_space == "transformer" and self.num_text_latents < self.num_text_prompts:
            raise ValueError(
                f"num_text_latents ({self.num_text_latents}) must be >= num_text_prompts ({self.num_text_prompts}): "
                "each text prompt is the output of one text latent."
            )
        if self.latent_space == "linear" and self.num_text_prompts != self.num_local_prompts:
            raise ValueError(
                "latent_space='linear' maps each frame prompt to one text prompt, so num_text_prompts must equal "
                f"num_local_prompts; got {self.num_text_prompts} and {self.num_local_prompts}."
            )
