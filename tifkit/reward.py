"""Reward-model baseline: train a tiny sequence classifier, load any checkpoint, score pairs.

The tiny model is `LlamaForSequenceClassification` (one output) trained with the Bradley-Terry loss
-log sigmoid(r(x, y_w) - r(x, y_l)) on labelled pairs. A classifier reads its score at the last
non-pad token, so `config.pad_token_id` is always set (batched scores then equal one-at-a-time
scores). Text is `prompt + response` (the char tokenizer prepends <bos>); a tokenizer with a chat
template gets user/assistant messages instead, and chat-message lists are passed through the template.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    LlamaConfig,
    LlamaForSequenceClassification,
)

from tifkit import TifkitError
from tifkit.io import save_stage


def build_reward_model(
    tokenizer, hidden_size: int = 64, num_layers: int = 2, num_heads: int = 4, seed: int = 0
) -> LlamaForSequenceClassification:
    """A tiny randomly initialised Llama sequence classifier (num_labels=1) sized to `tokenizer`."""
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=min(tokenizer.model_max_length, 4096),
        num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    return LlamaForSequenceClassification(config)


def _text(tokenizer, prompt, response) -> str:
    """One scoring text: chat template when there is one (or messages were given), else concatenation."""
    if isinstance(prompt, (list, tuple, np.ndarray)):  # conversational pairs: lists of messages
        return tokenizer.apply_chat_template(list(prompt) + list(response), tokenize=False)
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
        return tokenizer.apply_chat_template(messages, tokenize=False)
    return prompt + response


def _encode(tokenizer, prompts, responses, max_length: int | None) -> list[list[int]]:
    """Token ids per (prompt, response); templated text already holds its special tokens."""
    texts = [_text(tokenizer, p, r) for p, r in zip(prompts, responses)]
    special = not getattr(tokenizer, "chat_template", None)
    ids = tokenizer(texts, add_special_tokens=special)["input_ids"]
    if max_length is not None:  # keep the end: the classifier reads the last token
        ids = [x[-max_length:] for x in ids]
    return ids


def _pad(ids: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad a list of id lists into (input_ids, attention_mask)."""
    width = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, x in enumerate(ids):
        input_ids[i, : len(x)] = torch.tensor(x, dtype=torch.long)
        mask[i, : len(x)] = 1
    return input_ids.to(device), mask.to(device)


def _ensure_pad(model, tokenizer) -> int:
    """Give tokenizer and model config the same pad id (the classifier finds the last non-pad token)."""
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    return tokenizer.pad_token_id


def train_reward_model(
    pairs_df: pd.DataFrame,
    tokenizer,
    steps: int = 300,
    lr: float = 3e-3,
    batch_size: int = 32,
    seed: int = 0,
    hidden_size: int = 64,
    num_layers: int = 2,
    out_dir: str | os.PathLike | None = None,
    max_length: int | None = None,
    progress: bool = True,
) -> LlamaForSequenceClassification:
    """Train a tiny Bradley-Terry reward model on `pairs_df` (columns prompt, chosen, rejected).

    Each step draws `batch_size` pairs (seeded) and minimises -log sigmoid(r(chosen) - r(rejected))
    with AdamW. When `out_dir` is given the model and tokenizer are saved there (save_pretrained).
    Returns the model in eval mode.
    """
    missing = {"prompt", "chosen", "rejected"} - set(pairs_df.columns)
    if missing:
        raise TifkitError(f"Reward-model pairs lack column(s) {sorted(missing)}; give a table with prompt, chosen and rejected.")
    if len(pairs_df) == 0:
        raise TifkitError("Reward-model pairs table is empty; give at least one labelled pair.")
    model = build_reward_model(tokenizer, hidden_size=hidden_size, num_layers=num_layers, seed=seed)
    pad_id = _ensure_pad(model, tokenizer)
    prompts = pairs_df["prompt"].tolist()
    chosen = _encode(tokenizer, prompts, pairs_df["chosen"].tolist(), max_length)
    rejected = _encode(tokenizer, prompts, pairs_df["rejected"].tolist(), max_length)

    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    n = len(chosen)
    for _ in tqdm(range(steps), desc="reward model", disable=not progress or steps < 50):
        idx = torch.randint(n, (min(batch_size, n),), generator=gen).tolist()
        input_ids, mask = _pad([chosen[i] for i in idx] + [rejected[i] for i in idx], pad_id, "cpu")
        r = model(input_ids=input_ids, attention_mask=mask).logits.squeeze(-1)
        loss = -F.logsigmoid(r[: len(idx)] - r[len(idx) :]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    if out_dir is not None:
        save_stage(model, tokenizer, out_dir)
    return model


def load_reward_model(
    path_or_id: str | os.PathLike,
    trust_remote_code: bool = False,
    device: str | None = None,
    local_files_only: bool = False,
):
    """Load any sequence-classification checkpoint (local folder or hub id); returns (model, tokenizer).

    `device` defaults to CUDA when available. The model is in eval mode with `config.pad_token_id` set.
    """
    name = str(path_or_id)
    looks_local = name.startswith((".", "/", "~")) or os.path.isabs(name) or Path(name).exists()
    if looks_local and not Path(name).expanduser().exists():
        raise TifkitError(f"Reward model folder '{name}' does not exist; pass a saved checkpoint folder or a hub id.")
    if looks_local:
        name = str(Path(name).expanduser())
    kwargs = dict(trust_remote_code=trust_remote_code, local_files_only=local_files_only)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, **kwargs)
        model = AutoModelForSequenceClassification.from_pretrained(name, **kwargs)
    except (OSError, ValueError) as e:
        raise TifkitError(
            f"Could not load reward model '{name}' ({type(e).__name__}); check the path or id, hub access "
            "(HF_HUB_OFFLINE, token) and trust_remote_code."
        ) from None
    _ensure_pad(model, tokenizer)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return model.to(device).eval(), tokenizer


@torch.inference_mode()
def reward_scores(
    model,
    tokenizer,
    prompts,
    responses,
    batch_size: int = 32,
    max_length: int | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Scalar reward r(x, y) for each (prompt, response), batched and padded; float64 array.

    Texts are sorted by length so that each batch pads little; scores come back in input order.
    `max_length` keeps the last tokens of longer texts (the classifier reads the end).
    """
    prompts, responses = list(prompts), list(responses)
    if len(prompts) != len(responses):
        raise TifkitError(f"Got {len(prompts)} prompts and {len(responses)} responses; give one response per prompt.")
    if not prompts:
        return np.zeros(0)
    pad_id = _ensure_pad(model, tokenizer)
    ids = _encode(tokenizer, prompts, responses, max_length)
    order = np.argsort([len(x) for x in ids], kind="stable")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = np.empty(len(ids))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    for b in tqdm(batches, desc="reward scores", disable=not progress or len(batches) < 10):
        input_ids, mask = _pad([ids[i] for i in b], pad_id, device)
        logits = model(input_ids=input_ids, attention_mask=mask).logits
        out[b] = logits[:, 0].float().cpu().numpy()
    model.train(was_training)
    return out


def rm_margins(
    model, tokenizer, df: pd.DataFrame, batch_size: int = 32, max_length: int | None = None, progress: bool = True
) -> np.ndarray:
    """Reward-model margin r(x, chosen) - r(x, rejected) per row of a pair table (the `rm_margin` column)."""
    n = len(df)
    prompts = df["prompt"].tolist()
    responses = df["chosen"].tolist() + df["rejected"].tolist()
    scores = reward_scores(model, tokenizer, prompts + prompts, responses, batch_size, max_length, progress)
    return scores[:n] - scores[n:]
