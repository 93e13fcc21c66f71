"""Sharing adapters on the Hugging Face Hub: the model card every saved adapter carries."""

from .model_card import model_card_tags, render_model_card, write_model_card

__all__ = ["model_card_tags", "render_model_card", "write_model_card"]
