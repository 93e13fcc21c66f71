"""The DGL tuner: what peft instantiates for a `DGLConfig`."""

from __future__ import annotations

from ...modeling import VideoTuner
from .layer import DGLLayer


class DGLModel(VideoTuner):
    """Attaches DGL (generated deep text/frame prompts, global-local vision attention) to a frozen CLIPModel; see
    `DGLConfig`."""

    prefix = "dgl_"
    tuner_layer_cls = DGLLayer
