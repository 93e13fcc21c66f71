"""Configuration of Prompt Cube / Prompt Switch (Deng et al., ICCV 2023): a per-chunk prompt cube whose blocks are
transposed between frames in every vision layer, a prompt readout, and an auxiliary captioning objective."""

from __future__ import annotations

from dataclasses import dataclass, field

from peft.utils import PeftType

from ...config import VideoAdapterConfig

FREQUENT_WORDS = (
    "in on of to about this that a an the and there here is are . , <|endoftext|> <|startoftext|>"
).split()
"""Words whose caption-loss class weight is `frequent_word_weight` (the reference's list)."""

CLIP_FREQUENT_TOKEN_IDS = (
    530, 525, 539, 531, 781, 589, 682, 320, 550, 518, 537, 997, 763, 533, 631, 269, 267, 49407, 49406,
)  # fmt: skip
"""`FREQUENT_WORDS` as ids of OpenAI CLIP's BPE vocabulary (49,408 tokens; every OpenAI CLIP checkpoint shares it), in
the order of `FREQUENT_WORDS`: what `frequent_word_token_ids(CLIPTokenizer.from_pretrained(
"openai/clip-vit-base-patch32"))` returns."""

CLIP_VOCAB_SIZE = 49408


def frequent_word_token_ids(tokenizer, words: tuple[str, ...] | list[str] = tuple(FREQUENT_WORDS)) -> list[int]:
    """Token ids of `words` under `tokenizer` (a transformers tokenizer), for `PromptCubeConfig.frequent_token_ids`.

    Each word must be a single token of the tokenizer (special tokens included); a word that splits raises, since a
    piece of it would be down-weighted in every word that shares the piece.
    """
    ids = []
    for word in words:
        pieces = tokenizer.tokenize(word)
        if len(pieces) != 1:
            raise ValueError(f"Frequent word {word!r} is not one token of {type(tokenizer).__name__}: {pieces}.")
        ids.append(int(tokenizer.convert_tokens_to_ids(pieces[0])))
    return ids


@dataclass
class PromptCubeConfig(VideoAdapterConfig):
    """
    Prompt Switch adds, per frame, `num_prompts` prompt tokens taken from a `num_prompts × num_prompts × width` cube
    (the same cube for every chunk of `num_prompts` consecutive frames). In every vision layer, inside each chunk, the
    prompt block of the LayerNorm-1 output is transposed (frame f, slot s ↔ frame s, slot f) before self-attention;
    that switch is the only channel between frames. A readout attention lets each frame's CLS read all prompts of its
    chunk; frame features are L2-normalised and averaged. While training, a small caption decoder on the frame features
    adds a frequency-weighted captioning loss. See docs/methods/prompt_cube.md.

    Args:
        num_frames (`int`):
            Maximum frames per video; must be a multiple of `num_prompts`. Videos may have fewer frames (a multiple of
            `num_prompts`, padding marked by `video_mask`).
        num_prompts (`int`):
            Prompts per frame np, which is also the chunk length in frames (6 in the paper).
        cube_init_std (`float`, *optional*):
            Standard deviation of the cube's normal init; default `initializer_range / sqrt(width)` of the vision
            config (0.02 / sqrt(768) ≈ 7.2e-4 at ViT-B), as in the reference.
        readout_num_heads (`int`, *optional*):
            Heads of the readout attention; default the vision encoder's head count (12 at ViT-B).
        caption_loss_weight (`float`):
            Weight of the captioning loss added to the contrastive loss in training (0.5 in the paper). 0 disables the
            captioner: it is then not even built.
        caption_num_layers (`int`):
            Layers of the caption decoder (post-LN, ReLU, like `torch.nn.TransformerDecoder`).
        caption_num_heads (`int`, *optional*):
            Decoder heads; default the text encoder's head count (8 at ViT-B/32).
        caption_ffn_dim (`int`, *optional*):
            Decoder feed-forward width; default the text encoder's (2048 at ViT-B/32).
        caption_dropout (`float`):
            Decoder dropout (the reference uses the CLIP text config's, 0.0).
        caption_tie_head (`bool`):
            `False` (reference): the vocabulary head is a trainable Linear initialised from CLIP's token embedding
            (25.3 M parameters at ViT-B/32). `True` (deviation): the head is the frozen token embedding plus a
            trainable bias, which shrinks the captioner by ~75 %.
        frequent_word_weight (`float`):
            Caption-loss class weight of the frequent words (0.25 in the reference); other tokens weigh 1.
        frequent_token_ids (`list[int]`, *optional*):
            Vocabulary ids of the frequent words. Default: `CLIP_FREQUENT_TOKEN_IDS` when the base model has CLIP's
            49,408-token vocabulary; for another vocabulary only its SOT and EOT ids (a warning says so; pass
            `frequent_word_token_ids(tokenizer)`).
        save_captioner (`bool`):
            Whether `save_pretrained` writes the captioner into the adapter. Default `False`: the published adapter
            holds only what retrieval uses (cube and readout); full training checkpoints (`model.state_dict()`,
            accelerate's `save_state`) always hold everything.
        modules_to_save (`list[str]`, *optional*):
            Base-model modules that peft copies, trains and saves with the adapter, e.g.
            `["vision_model", "text_model"]` to reproduce the paper's full fine-tuning (see
            `peft_video.optimization.parameter_groups`).
    """

    num_frames: int = field(default=12, metadata={"help": "Maximum frames per video (a multiple of num_prompts)."})
    frame_sampling: str = field(
        default="chunked_segments", metadata={"help": "Frame sampling; chunk-major segments by default."}
    )
    num_prompts: int = field(default=6, metadata={"help": "Prompts per frame; also the chunk length in frames."})
    cube_init_std: float | None = field(
        default=None, metadata={"help": "Init std of the cube (default initializer_range / sqrt(width))."}
    )
    readout_num_heads: int | None = field(
        default=None, metadata={"help": "Heads of the readout attention (default: the vision encoder's)."}
    )
    caption_loss_weight: float = field(
        default=0.5, metadata={"help": "Weight of the auxiliary captioning loss; 0 disables the captioner."}
    )
    caption_num_layers: int = field(default=2, metadata={"help": "Layers of the caption decoder."})
    caption_num_heads: int | None = field(
        default=None, metadata={"help": "Heads of the caption decoder (default: the text encoder's)."}
    )
    caption_ffn_dim: int | None = field(
        default=None, metadata={"help": "Feed-forward width of the caption decoder (default: the text encoder's)."}
    )
    caption_dropout: float = field(default=0.0, metadata={"help": "Dropout of the caption decoder."})
    caption_tie_head: bool = field(
        default=False,
        metadata={"help": "Use the frozen token embedding (plus a trainable bias) as the caption head (deviation)."},
    )
    frequent_word_weight: float = field(
        default=0.25, metadata={"help": "Caption-loss class weight of frequent words."}
    )
    frequent_token_ids: list[int] | None = field(
        default=None, metadata={"help": "Vocabulary ids of the frequent words (default: CLIP's BPE ids)."}
    )
    save_captioner: bool = field(
        default=False, metadata={"help": "Also write the captioner into the adapter that save_pretrained publishes."}
    )

    def __post_init__(self) -> None:
        self.peft_type = PeftType.PROMPT_CUBE
        if not isinstance(self.num_prompts, int) or self.num_prompts < 1:
            raise ValueError(f"num_prompts must be a positive integer, got {self.num_prompts!r}.")
        if isinstance(self.num_frames, int) and self.num_frames % self.num_prompts:
            raise ValueError(
                f"PromptCubeConfig.num_frames={self.num_frames} is not a multiple of num_prompts={self.num_prompts}: "
                f"frames are processed in chunks of num_prompts; use num_frames="
                f"{max(1, self.num_frames // self.num_prompts) * self.num_prompts} or another multiple."
            )
        if self.frame_chunk_size is None:
            self.frame_chunk_size = self.num_prompts
        elif self.frame_chunk_size != self.num_prompts:
            raise ValueError(
                f"PromptCubeConfig.frame_chunk_size={self.frame_chunk_size} must equal num_prompts={self.num_prompts} "
                "(a chunk is the frames that share one cube)."
            )
        super().__post_init__()
        if self.caption_loss_weight < 0:
            raise ValueError(f"caption_loss_weight must be >= 0, got {self.caption_loss_weight}.")
        if self.caption_num_layers < 1:
            raise ValueError(f"caption_num_layers must be >= 1, got {self.caption_num_layers}.")
        if not 0.0 <= self.caption_dropout < 1.0:
            raise ValueError(f"caption_dropout must be in [0, 1), got {self.caption_dropout}.")
        if self.frequent_word_weight < 0:
            raise ValueError(f"frequent_word_weight must be >= 0, got {self.frequent_word_weight}.")
        if self.frequent_token_ids is not None:
            self.frequent_token_ids = [int(i) for i in self.frequent_token_ids]
