"""Per-pair log-probabilities, tokenized exactly as TRL's DPOTrainer does, batched and cached.

Three entry points:

- `tokenize_pairs(tokenizer, df, max_length=None) -> TokenizedPairs`: the prompt / chosen / rejected
  token ids that TRL 1.16's `DPOTrainer` trains on (same EOS handling, same prompt/completion split,
  same `keep_start` truncation), as plain Python lists.
- `pair_logprobs(model, tokenized, ...) -> (chosen_logp, rejected_logp)`: log pi(y|x) summed (or
  averaged) over response tokens, one float64 per pair, in input order.
- `cached_pair_logprobs(model, tokenized, cache_dir, ...)`: the same, stored on disk under a content
  hash of (model weights, token ids, reduction); a rerun reads the file instead of running the model.
  Use it for the reference model, whose log-probs every score needs and which never changes.

Log-probs are sums over response tokens unless `reduction="mean"` (sum / number of response tokens).

How TRL 1.16 tokenizes a preference row (trl/trainer/dpo_trainer.py, `_prepare_dataset` and
`DataCollatorForPreference`), which `tokenize_pairs` reproduces step by step:

1. A dataset without a `prompt` column gets one from `trl.data_utils.extract_prompt`.
2. If the *first* row is not conversational, `tokenizer.eos_token` (the text) is appended to every
   `chosen` and `rejected` that does not already end with it.
3. prompt, prompt+chosen and prompt+rejected are tokenized separately (`tokenizer(text=...)` for
   strings, so special tokens such as BOS are added; `apply_chat_template(..., tokenize=True)` for
   message lists, with `add_generation_prompt=True` for the prompt alone).
4. The prompt is the common prefix of the three token lists; the completion is the rest of each.
5. Rows whose prompt alone has `>= max_length` tokens are dropped by TRL (keep_start truncation
   would leave no completion token). We keep them, flag them in `TokenizedPairs.trl_dropped`, and
   their completions are empty (log-prob 0, zero gradient), so every input row still gets a score.
6. At collation, prompt+completion is cut to its first `max_length` tokens (per sequence).
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch

from tifkit import TifkitError
from tifkit.io import atomic_path

log = logging.getLogger(__name__)

Reduction = Literal["sum", "mean"]


# ----------------------------------------------------------------------------------------------------
# Tokenization
# ----------------------------------------------------------------------------------------------------
@dataclass
class TokenizedPairs:
    """Token ids of preference pairs, as TRL's DPOTrainer feeds them to the model.

    For pair i the chosen sequence is `prompt_ids[i] + chosen_ids[i]` and the rejected one
    `prompt_ids[i] + rejected_ids[i]`; only the completion tokens are scored. Truncation to
    `max_length` is already applied (keep_start, per sequence, as TRL's collator does).
    """

    prompt_ids: list[list[int]]
    chosen_ids: list[list[int]]
    rejected_ids: list[list[int]]
    pair_ids: list[str] | None = None
    max_length: int | None = None
    trl_dropped: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))

    def __post_init__(self):
        n = len(self.prompt_ids)
        if not (len(self.chosen_ids) == len(self.rejected_ids) == n):
            raise TifkitError("TokenizedPairs needs as many prompt, chosen and rejected id lists; build it with tokenize_pairs.")
        if len(self.trl_dropped) != n:
            self.trl_dropped = np.zeros(n, dtype=bool)

    def __len__(self) -> int:
        return len(self.prompt_ids)

    def subset(self, indices: Sequence[int]) -> "TokenizedPairs":
        """The pairs at `indices`, in that order."""
        idx = [int(i) for i in indices]
        return TokenizedPairs(
            prompt_ids=[self.prompt_ids[i] for i in idx],
            chosen_ids=[self.chosen_ids[i] for i in idx],
            rejected_ids=[self.rejected_ids[i] for i in idx],
            pair_ids=None if self.pair_ids is None else [self.pair_ids[i] for i in idx],
            max_length=self.max_length,
            trl_dropped=self.trl_dropped[idx],
        )

    def sequence_lengths(self) -> tuple[np.ndarray, np.ndarray]:
        """Token counts of the full chosen and rejected sequences (prompt included)."""
        p = np.array([len(x) for x in self.prompt_ids], dtype=np.int64)
        c = np.array([len(x) for x in self.chosen_ids], dtype=np.int64)
        r = np.array([len(x) for x in self.rejected_ids], dtype=np.int64)
        return p + c, p + r

    def n_tokens(self) -> int:
        """Total tokens over all chosen and rejected sequences (what a forward pass processes)."""
        c, r = self.sequence_lengths()
        return int(c.sum() + r.sum())

    def content_hash(self) -> str:
        """sha256 of the token ids (order-sensitive), for cache keys."""
        h = hashlib.sha256()
        for lists in (self.prompt_ids, self.chosen_ids, self.rejected_ids):
            lengths = np.array([len(x) for x in lists], dtype=np.int64)
            flat = np.fromiter((t for x in lists for t in x), dtype=np.int64, count=int(lengths.sum()))
            h.update(lengths.tobytes())
            h.update(flat.tobytes())
        return h.hexdigest()


def _is_conversational(value) -> bool:
    """Same test as trl.data_utils.is_conversational, on one field."""
    return isinstance(value, list) and len(value) > 0 and isinstance(value[0], dict) and "role" in value[0]


def _common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _chat_kwargs(row: dict) -> dict:
    """The extra apply_chat_template arguments TRL passes: the row's `tools` and `chat_template_kwargs`."""
    tools = row.get("tools")
    tools = json.loads(tools) if isinstance(tools, str) else tools
    extra = row.get("chat_template_kwargs") or {}
    return {"tools": tools, **extra}


def _chat_ids(tokenizer, messages, **kwargs) -> list[int]:
    out = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, **kwargs)
    return list(out["input_ids"])


def tokenize_pairs(tokenizer, df, max_length: int | None = None) -> TokenizedPairs:
    """Tokenize a pair table exactly as TRL 1.16's DPOTrainer does (see the module docstring).

    Args:
        tokenizer: a Hugging Face tokenizer (the `processing_class` given to DPOTrainer).
        df: a pandas DataFrame (or list of dicts) with `prompt`, `chosen`, `rejected` columns; strings,
            or chat message lists for conversational data. `pair_id` is carried along if present.
        max_length: DPOConfig.max_length used for training (TRL's default is 1024); None = no truncation.

    Returns:
        TokenizedPairs, one entry per input row, in input order.
    """
    rows = df.to_dict("records") if hasattr(df, "to_dict") else [dict(r) for r in df]
    if not rows:
        return TokenizedPairs([], [], [], pair_ids=[], max_length=max_length)
    for key in ("chosen", "rejected"):
        if key not in rows[0]:
            raise TifkitError(f"The pair table has no '{key}' column; give it prompt, chosen and rejected columns.")
    if "prompt" not in rows[0]:  # implicit prompt: TRL extracts the shared prefix first
        from trl.data_utils import extract_prompt

        rows = [{**r, **extract_prompt({"chosen": r["chosen"], "rejected": r["rejected"]})} for r in rows]

    # TRL decides "conversational" on the first example (for the EOS step) and per example (tokenizing).
    first_conv = any(_is_conversational(rows[0].get(k)) for k in ("prompt", "chosen", "rejected"))
    if not first_conv:
        eos = tokenizer.eos_token
        if eos is None:
            raise TifkitError("The tokenizer has no eos_token; set tokenizer.eos_token (TRL appends it to every response).")
        for r in rows:
            for k in ("chosen", "rejected"):
                if not r[k].endswith(eos):
                    r[k] = r[k] + eos

    n = len(rows)
    conv = [any(_is_conversational(r.get(k)) for k in ("prompt", "chosen", "rejected")) for r in rows]
    prompt_tok: list[list[int] | None] = [None] * n
    chosen_tok: list[list[int] | None] = [None] * n
    rejected_tok: list[list[int] | None] = [None] * n

    # Plain-text rows: one batched tokenizer call per field (same ids as one call per text).
    text_idx = [i for i in range(n) if not conv[i]]
    if text_idx:
        prompts = [rows[i]["prompt"] for i in text_idx]
        enc_p = tokenizer(text=prompts)["input_ids"]
        enc_c = tokenizer(text=[p + rows[i]["chosen"] for p, i in zip(prompts, text_idx)])["input_ids"]
        enc_r = tokenizer(text=[p + rows[i]["rejected"] for p, i in zip(prompts, text_idx)])["input_ids"]
        for j, i in enumerate(text_idx):
            prompt_tok[i], chosen_tok[i], rejected_tok[i] = list(enc_p[j]), list(enc_c[j]), list(enc_r[j])
    for i in (i for i in range(n) if conv[i]):
        r = rows[i]
        kw = _chat_kwargs(r)
        prompt_tok[i] = _chat_ids(tokenizer, r["prompt"], add_generation_prompt=True, **kw)
        chosen_tok[i] = _chat_ids(tokenizer, r["prompt"] + r["chosen"], **kw)
        rejected_tok[i] = _chat_ids(tokenizer, r["prompt"] + r["rejected"], **kw)

    P, C, R = [], [], []
    dropped = np.zeros(n, dtype=bool)
    for i in range(n):
        p, pc, pr = prompt_tok[i], chosen_tok[i], rejected_tok[i]
        plen = min(_common_prefix_length(p, pc), _common_prefix_length(p, pr))
        prompt, chosen, rejected = p[:plen], pc[plen:], pr[plen:]
        if max_length is not None:
            dropped[i] = len(prompt) >= max_length
            # the collator keeps the first max_length tokens of prompt+completion, per sequence
            room = max(0, max_length - len(prompt))
            prompt, chosen, rejected = prompt[:max_length], chosen[:room], rejected[:room]
        P.append(prompt)
        C.append(chosen)
        R.append(rejected)
    pair_ids = [str(r["pair_id"]) for r in rows] if "pair_id" in rows[0] else None
    return TokenizedPairs(P, C, R, pair_ids=pair_ids, max_length=max_length, trl_dropped=dropped)


# ----------------------------------------------------------------------------------------------------
# Batching
# ----------------------------------------------------------------------------------------------------
def to_device(a, device=None) -> torch.Tensor:
    """numpy array -> tensor on `device`; to a GPU through pinned memory without blocking, so that
    preparing the next batch on the CPU overlaps the GPU's work on this one."""
    t = torch.from_numpy(np.ascontiguousarray(a))
    if device is None or torch.device(device).type == "cpu":
        return t
    if torch.device(device).type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


@dataclass
class SequenceBatch:
    """A right-padded batch of sequences, and where its scored (response) tokens are.

    Token t of a row is predicted by the logits at position t - 1, so the scored logits are at
    (score_rows, score_cols) and their targets are `score_targets`. These index tensors are built on
    the CPU at collation time, so scoring needs no data-dependent `nonzero` (a GPU sync).
    """

    input_ids: torch.Tensor  # (S, L) long
    attention_mask: torch.Tensor  # (S, L) long
    completion_mask: torch.Tensor  # (S, L) bool: response tokens
    score_rows: torch.Tensor  # (N,) long
    score_cols: torch.Tensor  # (N,) long: position of the logits that predict each response token
    score_targets: torch.Tensor  # (N,) long: the response tokens
    n_scored: torch.Tensor  # (S,) response tokens per row


def collate_sequences(seqs: Sequence[tuple[list[int], list[int]]], pad_token_id: int, device=None) -> SequenceBatch:
    """Right-pad (prompt_ids, completion_ids) sequences to the longest one in the batch (TRL's layout)."""
    lens = np.array([len(p) + len(c) for p, c in seqs], dtype=np.int64)
    plen = np.array([len(p) for p, _ in seqs], dtype=np.int64)
    S, L = len(seqs), int(lens.max())
    ids = np.full((S, L), pad_token_id, dtype=np.int64)
    for s, (p, c) in enumerate(seqs):
        ids[s, : lens[s]] = p + c
    pos = np.arange(L)
    att = pos[None, :] < lens[:, None]
    comp = att & (pos[None, :] >= plen[:, None])
    rows, cols = np.nonzero(comp)
    t = lambda a: to_device(a, device)  # noqa: E731
    return SequenceBatch(
        input_ids=t(ids), attention_mask=t(att.astype(np.int64)), completion_mask=t(comp),
        score_rows=t(rows), score_cols=t(cols - 1), score_targets=t(ids[rows, cols]), n_scored=t(lens - plen),
    )


def pad_token_id_of(model, default: int = 0) -> int:
    """The id used for padding: config.pad_token_id, else eos, else `default` (padded positions are masked)."""
    cfg = getattr(model, "config", None)
    for name in ("pad_token_id", "eos_token_id"):
        v = getattr(cfg, name, None) if cfg is not None else None
        if isinstance(v, (list, tuple)):
            v = v[0] if v else None
        if v is not None:
            return int(v)
    return default


def model_device(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:  # pragma: no cover
        return torch.device("cpu")


def sequence_logps(model, batch: SequenceBatch, reduction: Reduction = "sum") -> torch.Tensor:
    """Log pi(completion | prompt) for each row of `batch`, summed (or averaged) over completion tokens.

    Differentiable (no grad-mode change here): the influence code calls it with grad enabled.
    The log-softmax runs in float32 (float64 for a float64 model) on the completion positions only.
    """
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False).logits
    rows = batch.score_rows
    sel = logits[rows, batch.score_cols]  # (N, V): only the scored positions
    if sel.dtype not in (torch.float32, torch.float64):
        sel = sel.float()
    tok_lp = sel.gather(-1, batch.score_targets[:, None]).squeeze(-1) - torch.logsumexp(sel, dim=-1)
    out = torch.zeros(batch.input_ids.shape[0], dtype=tok_lp.dtype, device=tok_lp.device)
    out = out.index_add(0, rows, tok_lp)
    if reduction == "mean":
        out = out / batch.n_scored.clamp(min=1).to(out.dtype)
    elif reduction != "sum":
        raise TifkitError(f"Unknown log-prob reduction {reduction!r}; use 'sum' or 'mean'.")
    return out


def progress(iterable, total: int, desc: str, show: bool):
    """`iterable` under a tqdm bar (left behind when done) when `show`, else `iterable` itself."""
    if not show:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False)


def length_sorted_batches(tokenized: TokenizedPairs, batch_size: int) -> list[tuple[np.ndarray, list]]:
    """The 2N sequences (chosen 0..N-1, then rejected) sorted by length, longest first, in batches of
    `2 * batch_size`: a list of (sequence indices, [(prompt_ids, completion_ids), ...])."""
    seqs = [(p, c) for p, c in zip(tokenized.prompt_ids, tokenized.chosen_ids)]
    seqs += [(p, r) for p, r in zip(tokenized.prompt_ids, tokenized.rejected_ids)]
    lengths = np.array([len(p) + len(c) for p, c in seqs])
    order = np.argsort(-lengths, kind="stable")
    per_batch = 2 * batch_size
    return [(order[s : s + per_batch], [seqs[i] for i in order[s : s + per_batch]]) for s in range(0, len(seqs), per_batch)]


# ----------------------------------------------------------------------------------------------------
# Forward-only scoring
# ----------------------------------------------------------------------------------------------------
def pair_logprobs(
    model,
    tokenized: TokenizedPairs,
    batch_size: int = 32,
    reduction: Reduction = "sum",
    show_progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Log-probabilities of every pair's chosen and rejected response under `model`.

    Chosen and rejected sequences are scored as 2N independent sequences: sorted by length (longest
    first, so an out-of-memory error shows up on the first batch), cut into batches of
    `2 * batch_size` sequences, each right-padded to its own longest sequence, then put back in input
    order. Runs in eval mode (dropout off) under `torch.inference_mode`; the training mode is restored.

    Returns:
        (chosen_logp, rejected_logp): float64 arrays of length N, in input order.
    """
    n = len(tokenized)
    if n == 0:
        return np.zeros(0), np.zeros(0)
    if batch_size < 1:
        raise TifkitError(f"batch_size must be >= 1, got {batch_size}.")
    pad_id = pad_token_id_of(model)
    device = model_device(model)
    out = torch.zeros(2 * n, dtype=torch.float64, device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            batches = length_sorted_batches(tokenized, batch_size)
            for idx, seqs in progress(batches, len(batches), "log-probs", show_progress):
                batch = collate_sequences(seqs, pad_id, device)
                # stays on the device: no sync per batch, so collating the next batch overlaps this one
                out[to_device(idx, device)] = sequence_logps(model, batch, reduction).double()
    finally:
        model.train(was_training)
    out = out.cpu().numpy()
    return out[:n].copy(), out[n:].copy()


# ----------------------------------------------------------------------------------------------------
# On-disk cache
# ----------------------------------------------------------------------------------------------------
def model_content_hash(model) -> str:
    """sha256 over the model's state_dict: names, dtypes, shapes and raw bytes of every tensor.

    Any change to any weight (including LoRA adapters) changes the hash. Cost: one pass over the weights
    (about 1 s per GB on CPU).
    """
    h = hashlib.sha256()
    h.update(type(model).__name__.encode())
    for name, t in sorted(model.state_dict().items()):
        if not torch.is_tensor(t):
            continue
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def logprob_cache_key(model, tokenized: TokenizedPairs, reduction: Reduction, model_hash: str | None = None) -> str:
    mh = model_hash or model_content_hash(model)
    blob = f"tifkit-logps-v1|{mh}|{tokenized.content_hash()}|{reduction}".encode()
    return hashlib.sha256(blob).hexdigest()[:24]


def cached_pair_logprobs(
    model,
    tokenized: TokenizedPairs,
    cache_dir: str | Path,
    batch_size: int = 32,
    reduction: Reduction = "sum",
    show_progress: bool = True,
    model_hash: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """`pair_logprobs`, stored at `cache_dir/logps-<key>.npz` with key = hash(weights, token ids, reduction).

    A rerun with the same weights, pairs and reduction reads the file and runs no forward pass.
    `model_hash` skips hashing the weights (pass a hash you already trust, e.g. of the checkpoint files).
    The file is written atomically (no half files) with a checksum of the values, and read without pickle;
    a file that is damaged or fails its checksum is recomputed (with a warning).
    """
    key = logprob_cache_key(model, tokenized, reduction, model_hash)
    path = Path(cache_dir) / f"logps-{key}.npz"
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as z:
                chosen, rejected, stored = z["chosen"], z["rejected"], str(z["checksum"])
            ok = len(chosen) == len(tokenized) and stored == _logps_checksum(chosen, rejected)
        except Exception:  # noqa: BLE001 - truncated, not a zip, bad CRC, missing array: recompute
            ok = False
        if ok:
            return chosen, rejected
        log.warning("%s is damaged or incomplete; recomputing the reference log-probs.", path)
        print(f"[tifkit] warning: {path} is damaged or fails its checksum; recomputing it.", flush=True)
    chosen, rejected = pair_logprobs(model, tokenized, batch_size=batch_size, reduction=reduction, show_progress=show_progress)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:  # a file object: np.savez would otherwise append ".npz" to the name
            np.savez(f, chosen=chosen, rejected=rejected, checksum=np.array(_logps_checksum(chosen, rejected)))
    return chosen, rejected


def _logps_checksum(chosen: np.ndarray, rejected: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in (chosen, rejected):
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()
