"""Real-architecture shapes without a hub: the paper's model families built from their published
configuration values, with random weights, and synthetic token ids of UltraFeedback-like lengths.

The cost and the numerics of scoring (FLOPs, memory, bf16 rounding) depend on the shapes, not on
trained weights, so a model built here times and sizes exactly like the checkpoint of the same name.
No tokenizer and no network are needed. On a CPU the same code runs at reduced depth (and, for
tests, reduced vocabulary): `build_shape("llama-3.2-1b", num_layers=1, vocab_size=4096)`.

Published values (each checkpoint's `config.json` on the hub). A `from_config` model of these
values has exactly the released checkpoint's parameter count (tests/test_realscale.py checks it):

    name            class               hidden  MLP     layers  heads (kv)  head_dim  vocab    tied  params
    llama-3.2-1b    LlamaForCausalLM    2048    8192    16      32 (8)      64        128256   yes   1.24B
    llama-3.1-8b    LlamaForCausalLM    4096    14336   32      32 (8)      128       128256   no    8.03B
    qwen3-0.6b      Qwen3ForCausalLM    1024    3072    28      16 (8)      128       151936   yes   0.60B
    qwen3-8b        Qwen3ForCausalLM    4096    12288   36      32 (8)      128       151936   no    8.19B
    pythia-2.8b     GPTNeoXForCausalLM  2560    10240   32      32          80        50304    no    2.78B

UltraFeedback-like lengths (`synthetic_pairs`): prompts about 150 tokens (log-normal, 20-600),
responses 250-400 tokens (uniform), as in the paper's data after chat templating; `scale` shrinks
every length for CPU runs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from tifkit import TifkitError
from tifkit.logprobs import TokenizedPairs


@dataclass(frozen=True)
class Shape:
    """One real architecture: its transformers class and published configuration values."""

    family: str  # llama | qwen | pythia (the tiny family of the same architecture)
    hub_id: str  # the checkpoint these values come from
    values: tuple  # (key, value) pairs of the config
    published_params: int  # parameter count of the released checkpoint (checked in tests/test_realscale.py)

    def config_kwargs(self) -> dict:
        return dict(self.values)


_LLAMA3_ROPE = {"rope_type": "llama3", "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                "original_max_position_embeddings": 8192}

SHAPES: dict[str, Shape] = {
    "llama-3.2-1b": Shape("llama", "meta-llama/Llama-3.2-1B", (
        ("hidden_size", 2048), ("intermediate_size", 8192), ("num_hidden_layers", 16),
        ("num_attention_heads", 32), ("num_key_value_heads", 8), ("head_dim", 64), ("vocab_size", 128256),
        ("max_position_embeddings", 131072), ("rms_norm_eps", 1e-5), ("rope_theta", 500000.0),
        ("rope_scaling", {**_LLAMA3_ROPE, "factor": 32.0}), ("tie_word_embeddings", True),
        ("bos_token_id", 128000), ("eos_token_id", 128001)), 1_235_814_400),
    "llama-3.1-8b": Shape("llama", "meta-llama/Llama-3.1-8B", (
        ("hidden_size", 4096), ("intermediate_size", 14336), ("num_hidden_layers", 32),
        ("num_attention_heads", 32), ("num_key_value_heads", 8), ("head_dim", 128), ("vocab_size", 128256),
        ("max_position_embeddings", 131072), ("rms_norm_eps", 1e-5), ("rope_theta", 500000.0),
        ("rope_scaling", {**_LLAMA3_ROPE, "factor": 8.0}), ("tie_word_embeddings", False),
        ("bos_token_id", 128000), ("eos_token_id", 128001)), 8_030_261_248),
    "qwen3-0.6b": Shape("qwen", "Qwen/Qwen3-0.6B", (
        ("hidden_size", 1024), ("intermediate_size", 3072), ("num_hidden_layers", 28),
        ("num_attention_heads", 16), ("num_key_value_heads", 8), ("head_dim", 128), ("vocab_size", 151936),
        ("max_position_embeddings", 40960), ("rms_norm_eps", 1e-6), ("rope_theta", 1000000.0),
        ("tie_word_embeddings", True), ("bos_token_id", 151643), ("eos_token_id", 151645)), 596_049_920),
    "qwen3-8b": Shape("qwen", "Qwen/Qwen3-8B", (
        ("hidden_size", 4096), ("intermediate_size", 12288), ("num_hidden_layers", 36),
        ("num_attention_heads", 32), ("num_key_value_heads", 8), ("head_dim", 128), ("vocab_size", 151936),
        ("max_position_embeddings", 40960), ("rms_norm_eps", 1e-6), ("rope_theta", 1000000.0),
        ("tie_word_embeddings", False), ("bos_token_id", 151643), ("eos_token_id", 151645)), 8_190_735_360),
    "pythia-2.8b": Shape("pythia", "EleutherAI/pythia-2.8b", (
        ("hidden_size", 2560), ("intermediate_size", 10240), ("num_hidden_layers", 32),
        ("num_attention_heads", 32), ("vocab_size", 50304), ("max_position_embeddings", 2048),
        ("rotary_pct", 0.25), ("rotary_emb_base", 10000), ("use_parallel_residual", True),
        ("layer_norm_eps", 1e-5), ("tie_word_embeddings", False), ("bos_token_id", 0), ("eos_token_id", 0)), 2_775_208_960),
}

# LoRA of the 8B parameter files (params/llama-3.1-8b.yaml, qwen3-8b.yaml)
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def lora_params(config, r: int = 16) -> int:
    """Parameters of rank-r LoRA adapters on LORA_TARGETS of a Llama/Qwen config: r x (in + out) per
    projection per layer."""
    h, inter = config.hidden_size, config.intermediate_size
    hd = getattr(config, "head_dim", None) or h // config.num_attention_heads
    q, kv = config.num_attention_heads * hd, config.num_key_value_heads * hd
    per_layer = (h + q) + 2 * (h + kv) + (q + h) + 2 * (h + inter) + (inter + h)
    return r * per_layer * config.num_hidden_layers


def shape_config(name: str, num_layers: int | None = None, vocab_size: int | None = None):
    """The transformers config of `name` (a key of SHAPES), optionally at reduced depth / vocabulary
    (CPU tests); dropout off, SDPA attention."""
    from transformers import GPTNeoXConfig, LlamaConfig, Qwen3Config

    if name not in SHAPES:
        raise TifkitError(f"Unknown real shape {name!r}; use one of {', '.join(SHAPES)}.")
    shape = SHAPES[name]
    kw = shape.config_kwargs()
    if num_layers is not None:
        kw["num_hidden_layers"] = int(num_layers)
    if vocab_size is not None:
        kw["vocab_size"] = int(vocab_size)
        kw["bos_token_id"], kw["eos_token_id"] = 1, 2
    kw["pad_token_id"] = 0
    cls = {"llama": LlamaConfig, "qwen": Qwen3Config, "pythia": GPTNeoXConfig}[shape.family]
    if shape.family == "pythia":
        kw.update(hidden_dropout=0.0, attention_dropout=0.0)
    else:
        kw.update(attention_dropout=0.0)
    cfg = cls(**kw)
    cfg._attn_implementation = "sdpa"
    return cfg


def count_params(name: str, num_layers: int | None = None, vocab_size: int | None = None) -> int:
    """Parameters of the shape (built on the meta device: no memory)."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(shape_config(name, num_layers, vocab_size))
    return sum(p.numel() for p in model.parameters())


def build_shape(name: str, num_layers: int | None = None, vocab_size: int | None = None,
                dtype: torch.dtype = torch.bfloat16, device="cpu", seed: int = 0, lora: bool = False,
                lora_r: int = 16):
    """A model of shape `name` with random weights (seeded), built directly on `device` in `dtype`.
    With lora=True, LoRA adapters (rank `lora_r`, alpha 2r, the 8B files' target modules) are added
    and given random non-zero B matrices (a trained adapter is not zero); only they are trainable."""
    from transformers import AutoModelForCausalLM

    cfg = shape_config(name, num_layers, vocab_size)
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    model.eval()
    if lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=lora_r, lora_alpha=2 * lora_r, lora_dropout=0.0,
                                                 target_modules=LORA_TARGETS, task_type="CAUSAL_LM"))
        gen = torch.Generator(device="cpu").manual_seed(seed + 1)
        with torch.no_grad():
            for n, p in model.named_parameters():
                if "lora_B" in n:
                    p.copy_((0.01 * torch.randn(p.shape, generator=gen)).to(p.dtype))
    return model


def perturbed_copy(model, scale: float = 0.01, seed: int = 1):
    """A copy of `model` with every floating weight moved by `scale` x its std (a 'trained' policy or
    validation model near the reference, for timing and precision checks)."""
    import copy

    other = copy.deepcopy(model)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    with torch.no_grad():
        for p in other.parameters():
            if p.is_floating_point() and p.numel() > 1:
                noise = torch.randn(p.shape, generator=gen).to(p.device, p.dtype)
                p.add_(scale * float(p.float().std()) * noise)
    return other


def synthetic_pairs(n: int, vocab_size: int, seed: int = 0, scale: float = 1.0, prompt_median: int = 150,
                    response_range: tuple[int, int] = (250, 400), first_id: int = 3) -> TokenizedPairs:
    """`n` preference pairs of random token ids with UltraFeedback-like lengths: prompt lengths
    log-normal around `prompt_median` (clipped to 20-600), chosen and rejected lengths uniform in
    `response_range`; every length times `scale` (at least 2 tokens). Ids avoid 0..first_id-1
    (pad, bos, eos of the reduced-vocabulary configs)."""
    rng = np.random.default_rng(seed)
    p_len = np.clip(rng.lognormal(np.log(prompt_median), 0.5, n), 20, 600)
    lo, hi = response_range
    c_len, r_len = rng.integers(lo, hi + 1, n), rng.integers(lo, hi + 1, n)
    to_len = lambda x: np.maximum(2, np.round(np.asarray(x, dtype=float) * scale)).astype(int)  # noqa: E731
    p_len, c_len, r_len = to_len(p_len), to_len(c_len), to_len(r_len)
    ids = lambda k: rng.integers(first_id, vocab_size, int(k)).tolist()  # noqa: E731
    return TokenizedPairs(prompt_ids=[ids(k) for k in p_len], chosen_ids=[ids(k) for k in c_len],
                          rejected_ids=[ids(k) for k in r_len], pair_ids=[f"s{seed}-{i}" for i in range(n)])


def flops_per_token(config, n_params: int, seq_len: int, n_embedding: int = 0) -> float:
    """Forward FLOPs per token: 2 x (parameters in matmuls) + attention's 4 x layers x (heads x
    head_dim) x sequence length (QK^T and AV over the full square, the usual MFU convention).
    `n_embedding` (the input embedding table, a lookup) is subtracted from `n_params`; for tied
    embeddings the LM head reuses that table and is counted once."""
    L = config.num_hidden_layers
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    matmul = n_params - n_embedding
    if getattr(config, "tie_word_embeddings", False):
        matmul += config.vocab_size * config.hidden_size
    return 2.0 * matmul + 4.0 * L * heads * head_dim * seq_len


def embedding_params(model) -> int:
    emb = model.get_input_embeddings()
    return sum(p.numel() for p in emb.parameters())


# bf16 dense peak FLOP/s by card (vendor datasheets, without sparsity)
BF16_PEAK = {"H200": 989e12, "H100 PCIe": 756e12, "H100 NVL": 835e12, "H100": 989e12, "A100": 312e12,
             "L40S": 362e12, "A10": 125e12}


def bf16_peak(device_name: str) -> float | None:
    """The card's dense bf16 peak FLOP/s from its name (None when unknown)."""
    for key in BF16_PEAK:  # most specific first (dict order)
        if key in device_name:
            return BF16_PEAK[key]
    return None
