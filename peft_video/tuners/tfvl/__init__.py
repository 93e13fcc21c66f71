"""TFVL: temporal modelling with CLIP's frozen encoders (Shen et al., IEEE TNNLS 2025). Docs: docs/methods/tfvl.md."""

from ...registry import register_video_method
from .config import TFVLConfig
from .layer import TFVLLayer, TFVLModule
from .model import TFVLModel

register_video_method(
    name="tfvl",
    config_cls=TFVLConfig,
    model_cls=TFVLModel,
    display_name="TFVL",
    description=(
        "TFVL (Shen et al., IEEE TNNLS 2025) models time with CLIP's own frozen encoders: *TextTemp* lets the "
        "frozen text encoder read the frame embeddings as the words of a temporal sentence, *ImageTemp* lets the "
        "frozen image encoder attend over the tokens of all frames of a video jointly. Only a small projection "
        "and prompt tokens are trained. The paper has no public code; peft_video's TFVL is a reconstruction from "
        "its abstract, documented in peft_video's `docs/methods/tfvl.md`."
    ),
    citation="""@article{shen2025tfvl,
  title   = {Temporal Modeling With Frozen Vision-Language Foundation Models for Parameter-Efficient Text-Video
             Retrieval},
  author  = {Shen and Hao and He and Zhang and Liu and Zhao and Han and Ding},
  journal = {IEEE Transactions on Neural Networks and Learning Systems},
  volume  = {36},
  number  = {10},
  pages   = {17527--17540},
  year    = {2025},
  doi     = {10.1109/tnnls.2025.3605657}
}""",
    test_variants={
        "tfvl": lambda num_frames: TFVLConfig(num_frames=num_frames, text_temp_gate_init=0.5),
        "tfvl_text_temp": lambda num_frames: TFVLConfig(
            num_frames=num_frames, image_temp=False, text_temp_gate_init=0.5
        ),
        "tfvl_image_temp": lambda num_frames: TFVLConfig(num_frames=num_frames, text_temp=False),
        "tfvl_text_prompts": lambda num_frames: TFVLConfig(
            num_frames=num_frames, text_temp_prompt_tokens=4, text_temp_gate_init=0.5
        ),
        # TextTemp's fields before issue 13: frame words at their own scale, not centred, frozen text positions only
        "tfvl_text_temp_plain": lambda num_frames: TFVLConfig(
            num_frames=num_frames,
            image_temp=False,
            text_temp_gate_init=0.5,
            text_temp_word_scale="free",
            text_temp_center_frames=False,
            text_temp_frame_positions="text",
        ),  # fmt: skip
    },
)

__all__ = ["TFVLConfig", "TFVLLayer", "TFVLModel", "TFVLModule"]
