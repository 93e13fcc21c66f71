"""Sharing adapters on the Hugging Face Hub: the model card every saved adapter carries."""

from .model_card import model_card_tags, render_model_card, write_model_card
from .push import push_adapter_to_hub

__all__ = ["model_card_tags", "push_adapter_to_hub", "render_model_card", "write_model_card"]
