"""Model families: tiny ones built from transformers configs (offline), real ones by hub id or path.

Tiny families mirror the architectures of the paper's families, at a size a CPU trains in a minute:

    llama   LlamaForCausalLM    (Llama-3.x style: RMSNorm, RoPE, SwiGLU, GQA)
    qwen    Qwen3ForCausalLM    (Qwen3 style: like Llama plus q/k norms)
    pythia  GPTNeoXForCausalLM  (Pythia style: LayerNorm, parallel residual, partial RoPE)
    gpt2    GPT2LMHeadModel     (learned positions, Conv1D projections)

Real checkpoints load through `load_model` with AutoModelForCausalLM / AutoTokenizer;
trust_remote_code stays off unless the parameters turn it on.
"""
from __future__ import annotations

from pathlib import Path

import torch

from tifkit import TifkitError
from tifkit.config import LoraParams, ModelParams  # noqa: F401  (parameter section; lives in config.py)

TINY_FAMILIES = ("llama", "qwen", "pythia", "gpt2")


def resolve_device(device: str = "auto") -> torch.device:
    """`model.device`: "auto" is cuda when a CUDA device is available, else cpu; anything else is a
    torch device string ("cpu", "cuda", "cuda:1", "mps"), checked here."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise TifkitError(f"model.device {device!r} is not a device; use auto, cpu, cuda or cuda:N.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TifkitError(f"model.device is {device!r} but this machine has no CUDA device; set model.device: auto "
                          "(or cpu), or install torch's CUDA build (README, GPU install).")
    return dev


def resolve_dtype(dtype: str):
    return "auto" if dtype == "auto" else getattr(torch, dtype)


def tiny_config(family: str, vocab_size: int, hidden_size: int = 64, num_layers: int = 2, num_heads: int = 4,
                max_positions: int = 64, pad_token_id: int = 0, bos_token_id: int = 1, eos_token_id: int = 2):
    """A transformers config of one tiny family."""
    from transformers import GPT2Config, GPTNeoXConfig, LlamaConfig, Qwen3Config

    special = dict(pad_token_id=pad_token_id, bos_token_id=bos_token_id, eos_token_id=eos_token_id)
    common = dict(vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=num_layers,
                  num_attention_heads=num_heads, max_position_embeddings=max_positions, **special)
    if family == "llama":
        return LlamaConfig(intermediate_size=2 * hidden_size, num_key_value_heads=max(1, num_heads // 2),
                           tie_word_embeddings=True, attention_dropout=0.0, **common)
    if family == "qwen":
        return Qwen3Config(intermediate_size=2 * hidden_size, num_key_value_heads=max(1, num_heads // 2),
                           head_dim=hidden_size // num_heads, tie_word_embeddings=True, **common)
    if family == "pythia":
        return GPTNeoXConfig(intermediate_size=2 * hidden_size, rotary_pct=0.25, use_parallel_residual=True,
                             tie_word_embeddings=False, hidden_dropout=0.0, attention_dropout=0.0, **common)
    if family == "gpt2":
        return GPT2Config(vocab_size=vocab_size, n_embd=hidden_size, n_layer=num_layers, n_head=num_heads,
                          n_positions=max_positions, n_inner=2 * hidden_size, resid_pdrop=0.0, embd_pdrop=0.0,
                          attn_pdrop=0.0, tie_word_embeddings=True, **special)
    raise TifkitError(f"Unknown tiny model family {family!r}: use one of {', '.join(TINY_FAMILIES)}, "
                      "or set model.name_or_path to a hub id or local checkpoint.")


def build_tiny_model(family: str, tokenizer, seed: int = 0, hidden_size: int = 64, num_layers: int = 2,
                     num_heads: int = 4, max_positions: int = 64):
    """A freshly initialised tiny causal LM of `family`, sized to `tokenizer` (seeded)."""
    from transformers import AutoModelForCausalLM

    cfg = tiny_config(family, len(tokenizer), hidden_size, num_layers, num_heads, max_positions,
                      tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model


def load_model(path_or_id: str, params: ModelParams | None = None, tokenizer_path: str | None = None):
    """Load (model, tokenizer) from a hub id or local folder with the parameters' dtype/device/trust."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    params = params or ModelParams()
    looks_local = Path(path_or_id).exists() or str(path_or_id).startswith((".", "/"))
    if str(path_or_id).startswith((".", "/")) and not Path(path_or_id).exists():
        raise TifkitError(f"Model folder {path_or_id} does not exist: train the stage that writes it or fix the path.")
    kw = dict(trust_remote_code=params.trust_remote_code)
    if params.revision and not looks_local:
        kw["revision"] = params.revision
    try:
        tok = AutoTokenizer.from_pretrained(tokenizer_path or params.tokenizer or path_or_id, **kw)
        model = AutoModelForCausalLM.from_pretrained(path_or_id, dtype=resolve_dtype(params.dtype), **kw)
    except OSError as e:
        fix = ("the folder does not hold a complete checkpoint: write it with save_pretrained (config.json, weights "
               "and tokenizer files)") if looks_local else ("it is not a local folder, so it was looked up on the "
               "hub: check the id, or allow hub access (hf auth login; HF_HUB_OFFLINE=0) on a machine that can reach it")
        raise TifkitError(f"Could not load model {path_or_id!r} ({str(e).splitlines()[0][:160]}): {fix}.") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return model.to(resolve_device(params.device)), tok


def apply_lora(model, lora: LoraParams):
    """Wrap `model` with fresh LoRA adapters (only the adapters train)."""
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, task_type="CAUSAL_LM",
                     target_modules=lora.target_modules)
    return get_peft_model(model, cfg)


def n_params(model, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
