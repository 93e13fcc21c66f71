"""Sharing adapters on the Hugging Face Hub: the model card every saved adapter carries, an upload that keeps it."""

from .model_card import hub_dataset_id, hub_repo_id, model_card_tags, write_model_card
from .push import push_adapter_to_hub

__all__ = ["hub_dataset_id", "hub_repo_id", "model_card_tags", "push_adapter_to_hub", "write_model_card"]
