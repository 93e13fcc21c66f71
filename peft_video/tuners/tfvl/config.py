"""Configuration of TFVL (Shen et al., IEEE TNNLS 2025): temporal modelling with CLIP's own frozen encoders."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from peft.utils import PeftType

from ...config import VideoAdapterConfig

TEXT_TEMP_FUSIONS = ("residual", "replace")
TEXT_TEMP_WORD_SCALES = ("token", "free")


@dataclass
class TFVLConfig(VideoAdapterConfig):
    """
    TFVL has two parts, each switchable. The paper gives only its abstract; every field below that the abstract does
    not fix is this library's reconstruction (see docs/methods/tfvl.md, which also records how defaults were chosen).

    Args:
        text_temp (`bool`):
            TextTemp (video head): the frozen text encoder reads the frame embeddings, projected to text width, as the
            "visual words" of a temporal sentence `[SOT; prompts; W f_1 … W f_T; EOT]` with its own positional
            embeddings and causal mask.
        image_temp (`bool`):
            ImageTemp (video backbone): in `image_temp_layers`, the tokens of all frames of a video pass jointly
            through the frozen vision layer, with learnable per-frame-index prompt tokens that give the joint
            attention a sense of frame order.
        text_temp_prompt_tokens (`int`):
            Learnable prompt tokens m after SOT in TextTemp's sentence. `m + num_frames + 2` must fit in the text
            encoder's positions (77 for CLIP). Default 0 (16 before), measured on the offline world: with prompts
            before the frame words TextTemp learnt colour changes more slowly, 4 prompts no better than 16 (so not
            because of how far the words sit), and 0 gained 1.7 points of twin accuracy and 9 on colour changes over
            16 (docs/methods/tfvl.md). With 0 the frame words also sit where CLIP's text encoder reads best (its
            effective length is under 20 tokens, Long-CLIP), and 75 frames fit.
        text_temp_fusion (`str`):
            `"residual"`: video embedding = mean of frame embeddings + gate · TextTemp output, the gate a learnable
            scalar starting at `text_temp_gate_init`. `"replace"`: the TextTemp output alone.
        text_temp_gate_init (`float`):
            Initial value of the residual gate. Default 1: TextTemp's order signal counts from the first step. With 0
            (the default before issue 13) training starts exactly at the mean-pooling head, but the gate only reached
            ~0.1 in a run and TextTemp alone stayed near chance on reversed twins (docs/methods/tfvl.md).
        text_temp_word_scale (`str`):
            `"token"`: every projected frame `W f_t` is rescaled to the mean norm of the frozen token embeddings, the
            scale at which the text encoder reads words, so that its positional embeddings (which carry the frame
            order) keep the weight they have for real words. `"free"`: `W f_t` as it comes (CLIP image embeddings
            are ~30-50 times larger than token embeddings, which drowns the positions).
        text_temp_center_frames (`bool`):
            Feed TextTemp the frames minus their mean over the video (what changes over time), not the frames. Off by
            default: centring keeps only the difference between what a video shows early and late, and loses what
            each frame shows; on the offline world it left colour changes (A turning into B against B into A) at
            chance (docs/methods/tfvl.md).
        text_temp_frame_positions (`str`):
            How TextTemp tells frames apart: `"text"`, only the frozen text positional embeddings of their slots;
            `"learned"`, also a learnable embedding per frame index (text width, zero at init) added to each frame
            word.
        image_temp_layers (`list[int]`):
            Indices of the vision layers that run jointly over all frames (negative indices count from the end).
        image_temp_frame_prompts (`int`):
            Prompt tokens k per frame index, per joint layer (replaced at every joint layer, VPT-deep style); shape
            `[len(image_temp_layers), num_frames, k, width]`.
        image_temp_video_prompts (`int`):
            Prompt tokens per joint layer shared by the whole video (a joint memory), shape `[layers, n, width]`.
        image_temp_frame_embedding (`bool`):
            Also index frames additively: a learnable embedding per frame index, `[num_frames, vision width]`, zero
            at init, added to every token of frame t before the first vision layer (a temporal position embedding),
            so that every layer, not only the joint ones' index prompts, knows which frame a token belongs to.
    """

    text_temp: bool = field(default=True, metadata={"help": "Enable TextTemp, the temporal video head."})
    image_temp: bool = field(default=True, metadata={"help": "Enable ImageTemp, joint spatio-temporal layers."})
    text_temp_prompt_tokens: int = field(default=0, metadata={"help": "Prompt tokens after SOT in TextTemp."})
    text_temp_fusion: Literal["residual", "replace"] = field(
        default="residual", metadata={"help": f"How TextTemp's output forms the video embedding: {TEXT_TEMP_FUSIONS}."}
    )
    text_temp_gate_init: float = field(default=1.0, metadata={"help": "Initial residual gate of TextTemp."})
    text_temp_center_frames: bool = field(
        default=False, metadata={"help": "Feed TextTemp frame embeddings minus their mean over the video."}
    )
    text_temp_frame_positions: Literal["text", "learned"] = field(
        default="learned", metadata={"help": "Frame order in TextTemp: frozen text positions, or also learned ones."}
    )
    text_temp_word_scale: Literal["token", "free"] = field(
        default="token",
        metadata={"help": f"Scale of the frame words TextTemp feeds the text encoder: {TEXT_TEMP_WORD_SCALES}."},
    )
    image_temp_layers: list[int] = field(
        default_factory=lambda: [-2, -1], metadata={"help": "Vision layers run jointly over all frames."}
    )
    image_temp_frame_prompts: int = field(
        default=12, metadata={"help": "Prompt tokens per frame index per joint layer."}
    )
    image_temp_video_prompts: int = field(
        default=16, metadata={"help": "Prompt tokens per joint layer shared by all frames of a video."}
    )
    image_temp_frame_embedding: bool = field(
        default=False, metadata={"help": "Add a learnable per-frame-index embedding to every token of a frame."}
    )

    def __post_init__(self) -> None:
        self.peft_type = PeftType.TFVL
        super().__post_init__()
        if not (self.text_temp or self.image_temp):
            raise ValueError("TFVLConfig needs text_temp or image_temp (or both); with neither there is no adapter.")
        if self.text_temp_word_scale not in TEXT_TEMP_WORD_SCALES:
            raise ValueError(
                f"text_temp_word_scale must be one of {TEXT_TEMP_WORD_SCALES}, got {self.text_temp_word_scale!r}."
            )
        if self.text_temp_frame_positions not in ("text", "learned"):
            raise ValueError(
                f"text_temp_frame_positions must be 'text' or 'learned', got {self.text_temp_frame_positions!r}."
            )
        if self.text_temp_fusion not in TEXT_TEMP_FUSIONS:
            raise ValueError(f"text_temp_fusion must be one of {TEXT_TEMP_FUSIONS}, got {self.text_temp_fusion!r}.")
        for name in ("text_temp_prompt_tokens", "image_temp_frame_prompts", "image_temp_video_prompts"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}.")
        self.image_temp_layers = list(self.image_temp_layers)
        if self.image_temp_frame_embedding and not self.image_temp:
            raise ValueError("image_temp_frame_embedding indexes ImageTemp's frames: it needs image_temp=True.")
        if self.image_temp and not self.image_temp_layers:
            raise ValueError("image_temp=True needs at least one index in image_temp_layers.")
        if len(set(self.image_temp_layers)) != len(self.image_temp_layers):
            raise ValueError(f"image_temp_layers has duplicates: {self.image_temp_layers}.")
