"""Memory of a scoring run, estimated before any weight is allocated, and checked against the device.

`estimate_scoring_memory(config, ...)` works from an architecture's config alone (bench, shapes);
`estimate_for_models(policy, others, ...)` from loaded models; `check_memory` prints the estimate
and raises TifkitError, naming a batch size that fits, when it exceeds the budget (`score.memory_budget_gb`,
or the device's free memory). tifkit.scores runs it before scoring.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

from tifkit import TifkitError
from tifkit.influence import trainable_parameters


@dataclass
class MemoryEstimate:
    """Peak memory of a scoring run on one device, by part (bytes); `total` is their sum."""

    weights: int  # every model held at once (policy, reference, validation model)
    gradients: int  # g_val (float32) + one batch's parameter gradients + G in the operand dtype
    activations: int  # one IF batch's saved activations and the hooks' held layer inputs
    logits: int  # one batch's logits and the float32 log-softmax of the scored positions

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.activations + self.logits

    def describe(self) -> str:
        g = lambda b: f"{b / 2**30:.1f}"  # noqa: E731
        return (f"{g(self.total)} GiB (weights {g(self.weights)}, gradients {g(self.gradients)}, "
                f"activations {g(self.activations)}, logits {g(self.logits)})")


def _cfg(config, *names, default=None):
    for n in names:
        v = getattr(config, n, None)
        if v is not None:
            return v
    return default


def estimate_scoring_memory(config, n_params: int, n_trainable: int, dtype: torch.dtype, batch_pairs: int,
                            seq_len: int, n_models: int = 3, influence: bool = True) -> MemoryEstimate:
    """An upper-end estimate of one process's peak memory while scoring (from the architecture's
    config alone, so that it can be printed before any weight is allocated).

    For a forward+backward of `2 * batch_pairs` rows of `seq_len` tokens through a decoder with
    hidden size h, MLP width I and L layers, with frozen weights (the batched IF's pass), autograd
    keeps about (6h + 3I) values per token per layer (norm inputs, q/k/v and attention output, the
    MLP's gate, up and activation), and the hooks hold the inputs of the trainable linear layers
    (3h + I per token per layer when every weight trains, 3h for LoRA on all projections) and the
    norms' tangents (2h). Logits: (rows x tokens x vocab) in the model dtype and its gradient, plus
    three float32 arrays of the scored positions (their copy, logsumexp's exponentials, their
    gradient). Every row is counted at the longest length (padding), so the estimate errs high; on a
    CPU, peak RSS of a bf16 IF batch measured 63-75% of it (2 layers of Qwen3-0.6B / Llama-3.2-1B+LoRA
    at full vocabulary). Without IF (influence=False): one forward's logits and a layer's activations.
    """
    h = int(_cfg(config, "hidden_size", "n_embd"))
    L = int(_cfg(config, "num_hidden_layers", "n_layer"))
    inter = int(_cfg(config, "intermediate_size", "n_inner", default=4 * h) or 4 * h)
    V = int(_cfg(config, "vocab_size"))
    b = torch.finfo(dtype).bits // 8
    acc = 8 if dtype == torch.float64 else 4
    tokens = 2 * batch_pairs * seq_len
    weights = n_models * n_params * b
    logits = tokens * V * (2 * b + 3 * acc)
    if not influence:
        return MemoryEstimate(weights, 0, tokens * (4 * h + 2 * inter) * b, logits)
    full = n_trainable > 0.5 * n_params
    held = (3 * h + inter) if full else 3 * h
    activations = tokens * L * (6 * h + 3 * inter + held + 2 * h) * b
    gradients = n_trainable * (acc + 2 * b)
    return MemoryEstimate(weights, gradients, activations, logits)


def estimate_for_models(policy: nn.Module, others: Sequence[nn.Module], batch_pairs: int, seq_len: int,
                        influence: bool = True) -> MemoryEstimate:
    """`estimate_scoring_memory` for loaded models (a policy, plus the other models held at once);
    the weights are the models' actual bytes, each shared tensor once."""
    base = getattr(policy, "get_base_model", lambda: policy)()
    n = sum(p.numel() for p in policy.parameters())
    n_tr = sum(p.numel() for _, p in trainable_parameters(policy)) if influence else 0
    dtype = next(policy.parameters()).dtype
    est = estimate_scoring_memory(base.config, n, n_tr, dtype, batch_pairs, seq_len, 1, influence)
    est.weights = resident_bytes([policy, *others], None)
    return est


def available_memory(device) -> int:
    """Free memory of `device` in bytes: CUDA's free memory, or the machine's available RAM."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))


def resident_bytes(models: Sequence[nn.Module], device) -> int:
    """Bytes of the parameters of `models` (each tensor once: a LoRA policy and a reference sharing
    one base count it once) that sit on `device` (any device when None)."""
    device, seen, total = (None if device is None else torch.device(device)), set(), 0
    for m in models:
        for t in m.parameters():
            if (device is None or t.device.type == device.type) and t.data_ptr() not in seen:
                seen.add(t.data_ptr())
                total += t.numel() * t.element_size()
    return total


def check_memory(estimate: MemoryEstimate, device, budget_gb: float | None = None, what: str = "scoring",
                 batch_pairs: int | None = None, say: Callable[[str], None] | None = print,
                 resident: int = 0) -> MemoryEstimate:
    """Print the estimate; raise TifkitError when it exceeds the budget (`budget_gb`, or the device's
    free memory plus `resident`, the bytes of the estimated models already loaded there), naming a
    batch size that would fit when a smaller one would."""
    budget = int(budget_gb * 2**30) if budget_gb is not None else available_memory(device) + int(resident)
    src = (f"budget {budget_gb:g} GiB" if budget_gb is not None else
           f"{budget / 2**30:.1f} GiB on {device} (free{' + the loaded models' if resident else ''})")
    if say is not None:
        say(f"[tifkit] memory estimate for {what}: {estimate.describe()}; {src}")
    if estimate.total <= budget:
        return estimate
    fix = "use a GPU with more memory, LoRA (model.lora.enabled), or score.dtype: bfloat16"
    per_batch = estimate.activations + estimate.logits
    fixed = estimate.weights + estimate.gradients
    if batch_pairs and batch_pairs > 1 and per_batch > 0 and fixed < budget:
        fits = int((budget - fixed) / (per_batch / batch_pairs))
        if fits >= 1:
            fix = f"lower score.batch_size from {batch_pairs} to {min(fits, batch_pairs - 1)}"
    raise TifkitError(f"{what.capitalize()} needs about {estimate.total / 2**30:.1f} GiB but has {src}; {fix}.")
