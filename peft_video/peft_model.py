"""`PeftModelForVideoTextRetrieval`: the PeftModel that `get_peft_model` returns for every peft_video config.

peft picks a task-specific PeftModel class from the config's `task_type` (as it does for `SEQ_CLS` or `CAUSAL_LM`);
ours routes the forward and the feature methods to the video tuner instead of calling the CLIPModel directly.
"""

from __future__ import annotations

from typing import Any

import torch
from peft import PeftModel

from .hub.model_card import model_card_tags, write_model_card
from .hub.push import push_adapter_to_hub


class PeftModelForVideoTextRetrieval(PeftModel):
    """A CLIPModel with a video adapter. Inputs: captions and videos `pixel_values` [B, T, 3, H, W].

    - `model(input_ids, attention_mask, pixel_values, video_mask=None, return_loss=True)` → `VideoTextRetrievalOutput`
      (`loss`, `logits_per_text` [n_texts, n_videos], `logits_per_video`, normalised embeddings).
    - `get_video_features(pixel_values, video_mask=None)` and `get_text_features(input_ids, attention_mask=None)` →
      outputs whose `pooler_output` is the projected embedding, as transformers 5's `get_*_features` return. Video
      embeddings never depend on a text: compute them once, index them, reuse them.
    - `with model.disable_adapter():` plain CLIP with mean pooling over frames (the zero-shot baseline).
    - `save_pretrained` writes the adapter and its model card (`model_cards/adapter_card.md`) with what the adapter
      config says; `peft_video.hub.write_model_card(folder, config, training=..., metrics=..., ...)` adds the facts of
      a run, and `push_to_hub(repo_id, card={...})` uploads them.
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

    def _get_peft_specific_model_tags(self) -> list[str]:
        # peft's create_or_update_model_card replaces the card's `tags` with exactly this list, in which its
        # `base_model:adapter:` tag names the base model's folder when it was loaded from one: ours names a Hub id only
        tags = [t for t in super()._get_peft_specific_model_tags() if not t.startswith("base_model:adapter:")]
        return [*tags, *model_card_tags(self.active_peft_config)]

    def create_or_update_model_card(self, output_dir: str) -> None:
        """Our card, then peft's metadata (library_name, tags, version line), then ours again: peft sets `base_model`
        to the base model's `_name_or_path`, a local folder for a local base, which the Hub cannot resolve."""
        write_model_card(output_dir, self.active_peft_config)  # first, so that peft updates it, not its own template
        super().create_or_update_model_card(output_dir)
        write_model_card(output_dir, self.active_peft_config)

    def push_to_hub(
        self,
        repo_id: str,
        *,
        commit_message: str | None = None,
        private: bool | None = None,
        token: str | bool | None = None,
        revision: str | None = None,
        create_pr: bool = False,
        card: dict[str, Any] | None = None,
        **kwargs: Any,
    ):
        """Upload the adapter with its model card (transformers' own push would swap in a generic card); `card`:
        keyword arguments of `peft_video.hub.write_model_card` (training setup, test results, license, ...)."""
        return push_adapter_to_hub(
            self,
            repo_id,
            card=card,
            commit_message=commit_message,
            private=private,
            token=token,
            revision=revision,
            create_pr=create_pr,
            **kwargs,
        )
