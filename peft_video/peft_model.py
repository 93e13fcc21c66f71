"""`PeftModelForVideoTextRetrieval`: the PeftModel that `get_peft_model` returns for every peft_video config.

peft picks a task-specific PeftModel class from the config's `task_type` (as it does for `SEQ_CLS` or `CAUSAL_LM`);
ours routes the forward and the feature methods to the video tuner instead of calling the CLIPModel directly.
"""

from __future__ import annotations

from typing import Any

import torch
from peft import PeftModel


class PeftModelForVideoTextRetrieval(PeftModel):
    """A CLIPModel with a video adapter. Inputs: captions and videos `pixel_values` [B, T, 3, H, W].

    - `model(input_ids, attention_mask, pixel_values, video_mask=None, return_loss=True)` → `VideoTextRetrievalOutput`
      (`loss`, `logits_per_text` [n_texts, n_videos], `logits_per_video`, normalised embeddings).
    - `get_video_features(pixel_values, video_mask=None)` and `get_text_features(input_ids, attention_mask=None)` →
      outputs whose `pooler_output` is the projected embedding, as transformers 5's `get_*_features` return. Video
      embeddings never depend on a text: compute them once, index them, reuse them.
    - `with model.disable_adapter():` plain CLIP with mean pooling over frames (the zero-shot baseline).
    """

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        video_mask: torch.Tensor | None = None,
        return_loss: bool | None = None,
        **kwargs: Any,
    ):
        with self._enable_peft_forward_hooks(**kwargs):
            kwargs = {k: v for k, v in kwargs.items() if k not in self.special_peft_forward_args}
            return self.base_model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                pixel_values=pixel_values,
                video_mask=video_mask,
                return_loss=return_loss,
                **kwargs,
            )

    def get_video_features(self, pixel_values: torch.Tensor, video_mask: torch.Tensor | None = None):
        """Projected video embeddings (`pooler_output` [B, P]) of pixel_values [B, T, 3, H, W]."""
        return self.base_model.get_video_features(pixel_values=pixel_values, video_mask=video_mask)

    def get_text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None):
        """Projected caption embeddings (`pooler_output` [B, P])."""
        return self.base_model.get_text_features(input_ids=input_ids, attention_mask=attention_mask)
