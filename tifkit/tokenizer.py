"""A character-level tokenizer built locally (no hub access), saved and reloaded like any HF tokenizer.

Every character of `CHARSET` is one token; `<bos>` is prepended to every encoded text, `<eos>` ends
responses (TRL appends the string "<eos>" to non-conversational completions, which the tokenizer maps
back to the single special token).
"""
from __future__ import annotations

import string

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

SPECIALS = ["<pad>", "<bos>", "<eos>", "<unk>"]
CHARSET = string.ascii_lowercase + string.digits + " .,:;=+-*/?!()[]<>#'\"\n" + string.ascii_uppercase


def build_char_tokenizer(charset: str = CHARSET, model_max_length: int = 256) -> PreTrainedTokenizerFast:
    """Return a fast character-level tokenizer: ids 0-3 are <pad>, <bos>, <eos>, <unk>."""
    vocab = {tok: i for i, tok in enumerate(SPECIALS)}
    for ch in dict.fromkeys(charset):  # keep order, drop repeats
        vocab.setdefault(ch, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", vocab["<bos>"])]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
    )
    return fast
