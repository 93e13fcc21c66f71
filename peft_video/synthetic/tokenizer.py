"""A word-level CLIP-style tokenizer for the offline world's grammar, saved in a format `AutoTokenizer` loads.

Ids: 0 is `<unk>`, then every grammar word (`grammar.all_words()`), then `<|startoftext|>` and `<|endoftext|>` last,
as in OpenAI's CLIP vocabulary. Sequences are `<|startoftext|> words <|endoftext|>` and are padded with
`<|endoftext|>` (Hugging Face's CLIP convention). Because the end token has the largest id and comes first among equal
ids, both ways of finding it work: transformers' CLIP (first `eos_token_id`, since eos_token_id != 2) and the original
CLIP code (`input_ids.argmax(-1)`).
"""

from __future__ import annotations

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from .grammar import all_words

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
UNK_TOKEN = "<unk>"
MODEL_MAX_LENGTH = 77


def world_vocabulary() -> dict[str, int]:
    """Token to id, in the fixed order described in the module docstring."""
    tokens = [UNK_TOKEN, *all_words(), BOS_TOKEN, EOS_TOKEN]
    return {token: i for i, token in enumerate(tokens)}


def build_tokenizer(model_max_length: int = MODEL_MAX_LENGTH) -> PreTrainedTokenizerFast:
    """The world's tokenizer (lower-cases, splits on whitespace and punctuation, maps unknown words to `<unk>`)."""
    vocab = world_vocabulary()
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK_TOKEN))
    backend.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN} $A {EOS_TOKEN}",
        pair=f"{BOS_TOKEN} $A {EOS_TOKEN} $B {EOS_TOKEN}",
        special_tokens=[(BOS_TOKEN, vocab[BOS_TOKEN]), (EOS_TOKEN, vocab[EOS_TOKEN])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        unk_token=UNK_TOKEN,
        model_max_length=model_max_length,
        padding_side="right",
        model_input_names=["input_ids", "attention_mask"],
    )
