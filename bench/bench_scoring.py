"""Scoring and influence throughput; writes (its device's section of) docs/PERFORMANCE.md.

    .venv/bin/python bench/bench_scoring.py                   # CPU, a few minutes on 2 cores
    .venv/bin/python bench/bench_scoring.py --device cuda     # GPU section
    .venv/bin/python bench/bench_scoring.py --quick           # smoke run, prints only

For a tiny Llama (hidden 64, 2 layers), a bigger one (hidden 256, 4 layers) and, on a GPU, a
larger one (hidden 1024, 8 layers), on random character pairs of 20-40 tokens per sequence:

1. forward-only scoring (`pair_logprobs`) against (a) a batch-size-1 loop (one unpadded sequence
   per forward) and (b) a bare batched forward (`model(...).logits`, nothing else) on the same
   padded, length-bucketed batches;
2. batched IF (hook inner products) against the one-backward-per-pair loop, both exact;
3. LossDiff-IRM scoring (three forward passes over D_tr: policy, reference, validation model)
   against exact IF (loop and batched), beside the paper's ~120x.

Timings are the best of several interleaved repeats (the CPU box is shared). Not a test.

Real shapes (`--real`, the section "Real shapes"; bench/gpu_check.sh runs it): the paper's
architectures from their published configs (`tifkit.shapes`, random weights, bf16) on synthetic
token ids of UltraFeedback-like lengths (prompt ~150, responses 250-400 tokens):

    .venv/bin/python bench/bench_scoring.py --real --device cuda     # full depth; GPU section
    .venv/bin/python bench/bench_scoring.py --real --device cpu      # 1 layer, vocab 512, lengths x0.05

per shape: forward-only scoring (pairs/s, tokens/s, model FLOPs utilization against the card's bf16
peak), exact batched IF (g_val + the hook pass + the reference forward it needs), its cost against
LossDiff-IRM's three forwards, peak memory beside the kit's estimate (printed before each model is
built), and a projection to UltraFeedback's 61,135 training pairs.
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from tifkit.influence import (  # noqa: E402
    batched_influence,
    flat_pair_gradient,
    influence_scores,
    validation_gradient,
)
from tifkit import TifkitError  # noqa: E402
from tifkit.io import atomic_write_text  # noqa: E402
from tifkit.losses import Objective  # noqa: E402
from tifkit.logprobs import (  # noqa: E402
    collate_sequences,
    length_sorted_batches,
    pad_token_id_of,
    pair_logprobs,
    sequence_logps,
    tokenize_pairs,
)
from tifkit.tokenizer import build_char_tokenizer  # noqa: E402

BETA = 0.1
OBJ = Objective("sigmoid", BETA, "val_loss")  # DPO at BETA, the paper's IF
CONFIGS = {  # name: hidden, layers, train pairs, val pairs, pairs timed in the IF loop, forward repeats
    "tiny": (64, 2, 1024, 64, 128, 3),
    "bigger": (256, 4, 512, 64, 48, 2),
    "large": (1024, 8, 512, 64, 64, 3),
}
QUICK = {"tiny": (64, 2, 128, 16, 16, 1), "bigger": (256, 4, 64, 16, 8, 1), "large": (1024, 8, 64, 16, 8, 1)}


def make_pairs(n: int, seed: int) -> pd.DataFrame:
    """~20-40 tokens per sequence: a 6-12 character prompt and 12-28 character responses."""
    rng = np.random.default_rng(seed)
    alphabet = list("abcdefghijklmnopqrstuvwxyz     .,")

    def text(lo, hi):
        return "".join(rng.choice(alphabet, int(rng.integers(lo, hi))))

    return pd.DataFrame({"prompt": [text(6, 13) for _ in range(n)], "chosen": [text(12, 29) for _ in range(n)],
                         "rejected": [text(12, 29) for _ in range(n)]})


def build_llama(tok, hidden: int, layers: int, seed: int, device):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(hidden_size=hidden, intermediate_size=4 * hidden, num_hidden_layers=layers,
                      num_attention_heads=max(2, hidden // 32), num_key_value_heads=max(1, hidden // 64),
                      vocab_size=len(tok), pad_token_id=tok.pad_token_id, max_position_embeddings=256)
    return LlamaForCausalLM(cfg).to(device).eval()


class Timer:
    """Best-of-N wall clock, synchronizing the GPU around each measurement."""

    def __init__(self, device):
        self.cuda = torch.device(device).type == "cuda"
        self.best: dict[str, float] = {}

    def __call__(self, name, fn):
        if self.cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        out = fn()
        if self.cuda:
            torch.cuda.synchronize()
        dt = time.perf_counter() - t
        self.best[name] = min(dt, self.best.get(name, float("inf")))
        return out


def bench_config(name, spec, tok, device, if_batch) -> dict:
    hidden, layers, n_train, n_val, n_loop, repeats = spec
    print(f"== {name}: hidden {hidden}, {layers} layers, {n_train} train / {n_val} val pairs", flush=True)
    train = tokenize_pairs(tok, make_pairs(n_train, 0))
    val = tokenize_pairs(tok, make_pairs(n_val, 1))
    model, ref = build_llama(tok, hidden, layers, 0, device), build_llama(tok, hidden, layers, 1, device)
    pad = pad_token_id_of(model)
    T = Timer(device)

    # 1. forward-only scoring
    batches = [collate_sequences(seqs, pad, device) for _, seqs in length_sorted_batches(train, 32)]
    singles = [collate_sequences([(p, c)], pad, device) for p, c in zip(train.prompt_ids, train.chosen_ids)]
    singles += [collate_sequences([(p, r)], pad, device) for p, r in zip(train.prompt_ids, train.rejected_ids)]

    def ours():
        return pair_logprobs(model, train, batch_size=32, show_progress=False)

    def bare():
        with torch.inference_mode():
            for b in batches:
                model(input_ids=b.input_ids, attention_mask=b.attention_mask, use_cache=False).logits

    def loop1():
        with torch.inference_mode():
            for b in singles:
                sequence_logps(model, b)

    ours(), bare()  # warm up
    for _ in range(repeats):
        T("ours", ours)
        T("bare", bare)
    T("loop1", loop1)

    # 2. influence: batched hooks vs one backward per pair (same g_val, same ref log-probs)
    rtr = pair_logprobs(ref, train, batch_size=32, show_progress=False)
    rva = pair_logprobs(ref, val, batch_size=32, show_progress=False)
    g_val = T("gval", lambda: validation_gradient(model, val, rva, OBJ, batch_size=if_batch))
    flat_val = torch.cat([g.reshape(-1) for g in g_val])
    sub = list(range(min(n_loop, n_train)))
    head = train.subset(sub)
    head_ref = (rtr[0][sub], rtr[1][sub])

    def batched(tok_, ref_):
        return batched_influence(model, tok_, ref_, g_val, OBJ, "sum", if_batch, False, False)

    def loop(tok_, ref_):
        return np.array([float(flat_pair_gradient(model, tok_, ref_, i, OBJ) @ flat_val) for i in range(len(tok_))])

    batched(head, head_ref), loop(head.subset([0, 1]), (head_ref[0][:2], head_ref[1][:2]))  # warm up
    for _ in range(2):  # interleaved, same pairs, best of two
        fast_head = T("batched_head", lambda: batched(head, head_ref))
        slow_head = T("loop_head", lambda: loop(head, head_ref))
    T("batched_all", lambda: batched(train, rtr))
    err = float(np.abs(fast_head - slow_head).max() / np.abs(slow_head).max())
    T("if_end2end", lambda: influence_scores(model, ref, train, val, OBJ, batch_size=if_batch, show_progress=False))

    b = T.best
    res = {
        "name": name, "hidden": hidden, "layers": layers, "params": sum(p.numel() for p in model.parameters()),
        "pairs": n_train, "tokens": train.n_tokens(), "n_val": n_val, "n_loop": len(sub), "max_rel_err": err,
        "ours_s": b["ours"], "bare_s": b["bare"], "loop1_s": b["loop1"], "gval_s": b["gval"],
        "if_speedup": b["loop_head"] / b["batched_head"],
        "batched_s": b["batched_all"], "loop_s": b["loop_head"] * n_train / len(sub),
        "if_end2end_s": b["if_end2end"],
    }
    print(f"   scoring {n_train / res['ours_s']:.0f} pairs/s; x{res['loop1_s'] / res['ours_s']:.1f} vs batch-1 loop; "
          f"{res['ours_s'] / res['bare_s']:.2f}x bare | IF batched {n_train / res['batched_s']:.0f} pairs/s, "
          f"x{res['if_speedup']:.1f} vs loop, rel err {err:.0e}", flush=True)
    return res


def render_section(results, args, device_desc) -> str:
    threads = torch.get_num_threads()
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    machine = (f"{device_desc}" if args.device != "cpu" else
               f"CPU only: {os.cpu_count()} cores (load average {load[0]:.1f} at the "
               f"end of the run), {platform.machine()}")
    import transformers

    cmd = f"{Path(sys.executable).name if args.device != 'cpu' else '.venv/bin/python'} bench/bench_scoring.py"
    cmd += "" if args.device == "cpu" else f" --device {args.device}"
    L = [
        f"Command: `{cmd}`. Machine: {machine}; torch {torch.__version__}, transformers {transformers.__version__}, "
        f"{threads} CPU thread(s), float32 (no TF32). Best of interleaved repeats.",
        "",
        "**1. Forward-only scoring** (`pair_logprobs`, 32 pairs = 64 sequences per batch; the chosen and rejected "
        "log-prob of every pair, as needed for the reference, IRM and LossDiff)",
        "",
        "| model | params | pairs (tokens) | pairs/s | tokens/s | speed-up vs batch-1 loop | time vs bare batched forward |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        L.append(f"| {r['name']} (h{r['hidden']}, {r['layers']}L) | {r['params'] / 1e6:.2f}M | {r['pairs']} ({r['tokens']}) | "
                 f"{r['pairs'] / r['ours_s']:.0f} | {r['tokens'] / r['ours_s']:.0f} | {r['loop1_s'] / r['ours_s']:.1f}x | "
                 f"{r['ours_s'] / r['bare_s']:.2f}x |")
    L += [
        "",
        "**2. Exact IF**, batched hooks (`influence_scores(method=\"batched\")`, 32 pairs per batch) against one "
        "backward per pair (`method=\"loop\"`), same g_val",
        "",
        "| model | batched pairs/s | loop pairs/s | speed-up | max rel. diff | g_val time (val pairs) |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        L.append(f"| {r['name']} | {r['pairs'] / r['batched_s']:.0f} | {r['pairs'] / r['loop_s']:.1f} | "
                 f"{r['if_speedup']:.1f}x | {r['max_rel_err']:.0e} | {r['gval_s']:.2f}s ({r['n_val']}) |")
    timed = ", ".join(f"{r['n_loop']} ({r['name']})" for r in results)
    L += [
        "",
        f"Speed-up: both methods timed on the same first pairs, {timed}; loop pairs/s from those; batched "
        "pairs/s over all pairs. Max rel. diff: between the two methods' scores on those pairs, float32.",
        "",
        "**3. LossDiff-IRM against exact IF** on D_tr (the validation model's own DPO run is not counted)",
        "",
        "| model | LossDiff-IRM: 3 forwards | exact IF, loop | loop / LossDiff-IRM | exact IF, batched, end to end | batched / LossDiff-IRM |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        t3 = 3 * r["ours_s"]
        loop_total = r["loop_s"] + r["gval_s"] + r["ours_s"] / 2  # + the reference forward on D_tr
        L.append(f"| {r['name']} | {t3:.2f}s | {loop_total:.1f}s | {loop_total / t3:.0f}x | {r['if_end2end_s']:.2f}s | "
                 f"{r['if_end2end_s'] / t3:.1f}x |")
    return "\n".join(L)


HEADER = """# Performance of scoring and influence

Produced by `bench/bench_scoring.py` (a benchmark, not a test): each device's section below is rewritten
by a run of that script on that device. Data: random character pairs, prompts of 6-12 characters,
responses of 12-28, so 20-40 tokens per sequence with BOS and EOS; tiny Llama models built from configs.
"""


def write_section(path: Path, key: str, title: str, body: str) -> None:
    text = path.read_text() if path.exists() else HEADER
    block = f"<!-- bench:{key} -->\n## {title}\n\n{body}\n<!-- /bench:{key} -->"
    pat = re.compile(rf"<!-- bench:{key} -->.*?<!-- /bench:{key} -->", re.S)
    text = pat.sub(lambda _: block, text) if pat.search(text) else text.rstrip() + "\n\n" + block + "\n"
    atomic_write_text(path, text)


# ------------------------------------------------------------------------------------ real shapes
UF_PAIRS = 61_135  # UltraFeedback-binarized train_prefs
UF_VAL = 1_000  # D_val of the real-family params files (data.val_size)
PAPER_IF_HOURS = 10.0  # the paper: exact IF at 1B about 10 hours (its proxies about 5 minutes)
# name: shape, LoRA, train pairs, val pairs, scoring batch (pairs), IF batch (pairs)
REAL_GPU = {
    "llama-3.2-1b": ("llama-3.2-1b", False, 256, 32, 16, 8),
    "qwen3-0.6b": ("qwen3-0.6b", False, 256, 32, 16, 8),
    "pythia-2.8b": ("pythia-2.8b", False, 128, 16, 8, 4),
    "llama-3.1-8b+lora": ("llama-3.1-8b", True, 64, 16, 8, 4),
    "qwen3-8b+lora": ("qwen3-8b", True, 64, 16, 8, 4),
}
REAL_CPU = {  # the same code at 1 layer, vocabulary 512, lengths x0.05 (CI keeps it working)
    "qwen3-0.6b": ("qwen3-0.6b", False, 16, 4, 8, 8),
    "llama-3.1-8b+lora": ("llama-3.1-8b", True, 8, 4, 4, 4),
}


def bench_real(name, spec, device, cpu_mode: bool) -> dict:
    from tifkit.influence import ValidationTarget, trainable_parameters, validation_gradient
    from tifkit.memory import check_memory, estimate_scoring_memory
    from tifkit.shapes import build_shape, embedding_params, flops_per_token, lora_params, shape_config, synthetic_pairs

    shape, lora, n_train, n_val, sb, ib = spec
    layers, vocab, scale = (1, 512, 0.05) if cpu_mode else (None, None, 1.0)
    cfg = shape_config(shape, layers, vocab)
    train = synthetic_pairs(n_train, cfg.vocab_size, 0, scale)
    val = synthetic_pairs(n_val, cfg.vocab_size, 1, scale)
    c, r = train.sequence_lengths()
    seq_max = int(max(c.max(), r.max()))
    mean_len = float(np.concatenate([c, r]).mean())
    # the estimate, before any weight exists: one model in memory (policy = reference = validation model here)
    from tifkit.shapes import SHAPES, count_params

    n_all = SHAPES[shape].published_params if not cpu_mode else count_params(shape, layers, vocab)
    n_tr = lora_params(cfg) if lora else n_all
    while True:  # the kit's estimate before any weight exists; halve the IF batch until it fits
        try:
            est = check_memory(estimate_scoring_memory(cfg, n_all, n_tr, torch.bfloat16, ib, seq_max, n_models=1),
                               device, what=f"{name} IF", batch_pairs=ib)
            break
        except TifkitError as e:
            if ib == 1:
                raise
            print(f"   {e} Halving the IF batch to {ib // 2}.", flush=True)
            ib //= 2
    print(f"== {name}: {cfg.num_hidden_layers} layers, {n_train} train / {n_val} val pairs, "
          f"mean {mean_len:.0f} tokens per sequence", flush=True)
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    model = build_shape(shape, layers, vocab, dtype=torch.bfloat16, device=device, seed=0, lora=lora)
    n_params = sum(p.numel() for p in model.parameters())
    n_train_params = sum(p.numel() for _, p in trainable_parameters(model))
    T = Timer(device)
    kw = dict(show_progress=False)

    def fwd():
        return pair_logprobs(model, train, batch_size=sb, **kw)

    fwd()  # warm up (kernels, allocator)
    for _ in range(2):
        T("fwd", fwd)
    peak_fwd = torch.cuda.max_memory_allocated() if cuda else float("nan")
    ref_tr = pair_logprobs(model, train, batch_size=sb, **kw)
    ref_va = pair_logprobs(model, val, batch_size=sb, **kw)
    # a policy != reference: shift the reference log-probs (the margin then varies across pairs)
    rng = np.random.default_rng(0)
    ref_tr = tuple(x + rng.normal(0, 2.0, len(x)) for x in ref_tr)
    ref_va = tuple(x + rng.normal(0, 2.0, len(x)) for x in ref_va)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    g_val = T("gval", lambda: validation_gradient(model, val, ref_va, OBJ, batch_size=ib))
    target = ValidationTarget(model, g_val, OBJ)
    head = train.subset(range(min(len(train), 2 * ib)))
    target.scores(head, (ref_tr[0][: len(head)], ref_tr[1][: len(head)]), batch_size=ib, verify=True, **kw)
    IF = None
    for _ in range(2):
        IF = T("if", lambda: target.scores(train, ref_tr, batch_size=ib, verify=False, **kw))
    peak_if = torch.cuda.max_memory_allocated() if cuda else float("nan")
    assert np.isfinite(IF).all()
    emb = embedding_params(model)
    fpt = flops_per_token(cfg, n_params - (n_train_params if lora else 0), int(mean_len), emb)
    tokens = train.n_tokens()
    if_factor = 2.0 if lora else 3.0  # forward + activation backward (+ the hooks' G matmuls when every weight trains)
    b = T.best
    if_total = b["if"] + b["fwd"]  # the hook pass + the reference forward on D_tr it needs
    res = dict(name=name, layers=cfg.num_hidden_layers, params=n_params, trainable=n_train_params, pairs=n_train,
               tokens=tokens, mean_len=mean_len, fwd_s=b["fwd"], if_s=b["if"], gval_s=b["gval"], n_val=n_val,
               if_total_s=if_total, ratio=if_total / (3 * b["fwd"]),
               fwd_flops=fpt * tokens / b["fwd"], if_flops=if_factor * fpt * tokens / b["if"],
               peak_fwd=peak_fwd, peak_if=peak_if, est=est.total, sb=sb, ib=ib, lora=lora)
    if cuda and peak_if > est.total:
        print(f"   note: measured peak {peak_if / 2**30:.1f} GiB exceeds the estimate {est.total / 2**30:.1f} GiB", flush=True)
    print(f"   forward {n_train / b['fwd']:.1f} pairs/s, IF {n_train / b['if']:.1f} pairs/s, "
          f"IF/LossDiff-IRM {res['ratio']:.2f}x, peak {peak_if / 2**30:.1f} GiB (estimate {est.total / 2**30:.1f})",
          flush=True)
    del model, g_val, target
    if cuda:
        torch.cuda.empty_cache()
    return res


def render_real(results, device, cpu_mode: bool, peak: float | None) -> str:
    import transformers

    from tifkit.shapes import BF16_PEAK  # noqa: F401

    dev = torch.cuda.get_device_name() if torch.device(device).type == "cuda" else "CPU"
    mode = ("CPU mode: 1 layer, vocabulary 512, lengths x0.05 (a smoke run that keeps the script working; "
            "its speeds say nothing about GPUs)" if cpu_mode else "full depth and vocabulary, UltraFeedback-like lengths")
    cmd = "bash bench/gpu_check.sh" + (" --cpu" if cpu_mode else "")
    peak_s = f"{peak / 1e12:.0f} TFLOP/s bf16 dense" if peak else "unknown (no MFU)"
    L = [f"Command: `{cmd}`. Device: {dev}; torch {torch.__version__}, transformers {transformers.__version__}; "
         f"bf16 weights, float32 log-softmax, g_val and IF accumulation; {mode}. Card peak: {peak_s}. "
         "Best of two timed repeats after a warm-up.", "",
         "| shape | params (trainable) | pairs, mean tokens/seq | forward scoring: pairs/s, tokens/s, MFU "
         "| exact IF: pairs/s, MFU | exact IF / LossDiff-IRM | peak memory (kit's estimate) "
         f"| projected over {UF_PAIRS:,} pairs: LossDiff-IRM, exact IF |",
         "|---|---|---|---|---|---|---|---|"]
    for r in results:
        if "error" in r:
            L.append(f"| {r['name']} | failed: {r['error']} |" + " |" * 6)
            continue
        mfu = lambda f: f"{100 * f / peak:.0f}%" if peak else "n/a"  # noqa: E731
        gib = lambda x: "n/a" if x != x else f"{x / 2**30:.1f} GiB"  # noqa: E731
        proj_ld = 3 * r["fwd_s"] / r["pairs"] * UF_PAIRS
        proj_if = r["if_total_s"] / r["pairs"] * UF_PAIRS + r["gval_s"] / r["n_val"] * UF_VAL
        hm = lambda s: f"{s / 3600:.1f} h" if s >= 3600 else f"{s / 60:.0f} min"  # noqa: E731
        L.append(f"| {r['name']} ({r['layers']}L) | {r['params'] / 1e9:.3g}B ({r['trainable'] / 1e6:.3g}M) | "
                 f"{r['pairs']}, {r['mean_len']:.0f} | {r['pairs'] / r['fwd_s']:.1f}, {r['tokens'] / r['fwd_s']:.0f}, "
                 f"{mfu(r['fwd_flops'])} | {r['pairs'] / r['if_s']:.1f}, {mfu(r['if_flops'])} | {r['ratio']:.2f}x | "
                 f"{gib(r['peak_if'])} ({gib(r['est'])}) | {hm(proj_ld)}, {hm(proj_if)} |")
    L += ["",
          "Forward scoring: `pair_logprobs` (batch of "
          + ", ".join(sorted({str(r['sb']) for r in results if 'sb' in r})) + " pairs). Exact IF: `ValidationTarget.scores` "
          "(batched hooks; batch of " + ", ".join(sorted({str(r['ib']) for r in results if 'ib' in r})) + " pairs), after "
          "g_val on the validation pairs (timed apart, not in the ratio). Exact IF / LossDiff-IRM: (the hook "
          "pass + the reference forward on D_tr) / (three forwards: policy, reference, validation model); "
          "training the validation model is not counted for LossDiff. MFU: model FLOPs (2 x matmul "
          "parameters + 4 x layers x attention width x length, per token; IF counts 3 forwards of work when "
          "every weight trains, 2 with LoRA) per second over the card's peak. Projected: measured seconds per "
          f"pair x {UF_PAIRS:,} (a projection, not a run), for exact IF plus g_val over {UF_VAL:,} validation pairs; the paper reports about {PAPER_IF_HOURS:.0f} h for "
          "exact IF at 1B against about 5 min for its proxies."]
    return "\n".join(L)


def main_real(args):
    from tifkit.shapes import bf16_peak

    cpu_mode = torch.device(args.device).type != "cuda"
    table = REAL_CPU if cpu_mode else REAL_GPU
    names = args.configs.split(",") if args.configs else list(table)
    unknown = [n for n in names if n not in table]
    if unknown:
        sys.exit(f"unknown shape(s) {', '.join(unknown)} for {'--device cpu' if cpu_mode else 'the GPU'}; "
                 f"use {', '.join(table)}")
    peak = None if cpu_mode else (args.peak_tflops * 1e12 if args.peak_tflops else bf16_peak(torch.cuda.get_device_name()))
    key = "realscale-cpu" if cpu_mode else "realscale-gpu"
    title = f"Real shapes, bf16 ({'CPU mode' if cpu_mode else torch.cuda.get_device_name()})"
    results = []
    for n in names:  # one shape failing (out of memory) leaves the others' rows, and says why
        try:
            spec = table[n]
            if args.pairs:  # fewer pairs (a smoke run: tests/test_realscale.py), same shapes and code
                shape, lora, n_train, n_val, sb, ib = spec
                k = max(2, int(args.pairs))
                spec = (shape, lora, k, min(n_val, k), min(sb, k), min(ib, k))
            results.append(bench_real(n, spec, args.device, cpu_mode))
        except (TifkitError, torch.cuda.OutOfMemoryError) as e:
            print(f"   {n} failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}", flush=True)
            results.append({"name": n, "error": f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"})
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        if not args.quick:  # after every shape: a run cut short by a time limit keeps what it measured
            done = "" if len(results) == len(names) else f"\n\n(Partial: {len(results)} of {len(names)} shapes so far.)"
            write_section(Path(args.out), key, title, render_real(results, args.device, cpu_mode, peak) + done)
    print(render_real(results, args.device, cpu_mode, peak))
    if not args.quick:
        print(f"wrote {args.out}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: stable numbers on a shared box)")
    ap.add_argument("--if-batch", type=int, default=32, help="pairs per batch for IF")
    ap.add_argument("--configs", default=None, help="comma list among tiny,bigger,large")
    ap.add_argument("--quick", action="store_true", help="small sizes, print only")
    ap.add_argument("--out", default=os.environ.get("TIFKIT_PERF_OUT", str(ROOT / "docs" / "PERFORMANCE.md")))
    ap.add_argument("--real", action="store_true", help="real architectures (tifkit.shapes), bf16")
    ap.add_argument("--pairs", type=int, default=None,
                    help="--real only: score this many training pairs per shape instead of the table's (a smoke run; "
                         "bf16 matmuls on a CPU without AVX512-BF16/AMX are slow)")
    ap.add_argument("--peak-tflops", type=float, default=None, help="the card's bf16 peak, when its name is not known")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.real:
        return main_real(args)
    on_gpu = torch.device(args.device).type == "cuda"
    names = args.configs.split(",") if args.configs else (["tiny", "bigger", "large"] if on_gpu else ["tiny", "bigger"])
    table = QUICK if args.quick else CONFIGS
    tok = build_char_tokenizer()
    results = [bench_config(n, table[n], tok, args.device, args.if_batch) for n in names]
    desc = torch.cuda.get_device_name() if on_gpu else "CPU"
    body = render_section(results, args, desc)
    print(body)
    if not args.quick:
        key = "gpu" if on_gpu else "cpu"
        title = f"GPU ({desc})" if on_gpu else f"CPU ({os.cpu_count()} shared cores) - the development machine"
        write_section(Path(args.out), key, title, body)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
