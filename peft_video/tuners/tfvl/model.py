"""The TFVL tuner: what peft instantiates for a `TFVLConfig`."""

from __future__ import annotations

from ...modeling import VideoTuner
from .layer import TFVLLayer


class TFVLModel(VideoTuner):
    """Attaches TFVL (TextTemp head, ImageTemp joint layers) to a frozen CLIPModel; see `TFVLConfig`."""

    prefix = "tfvl_"
    tuner_layer_cls = TFVLLayer
