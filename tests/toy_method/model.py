from peft_video.modeling import VideoTuner

from .layer import ToyMeanLayer


class ToyMeanModel(VideoTuner):
    prefix = "toy_mean_"
    tuner_layer_cls = ToyMeanLayer
