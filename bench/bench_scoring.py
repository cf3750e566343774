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
    _batched_influence,
    flat_pair_gradient,
    influence_scores,
    trainable_parameters,
    validation_gradient,
)
from tifkit.io import atomic_write_text  # noqa: E402
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
    named = trainable_parameters(model)
    g_val = T("gval", lambda: validation_gradient(model, val, rva, BETA, batch_size=if_batch))
    targets = {id(p): g for (_, p), g in zip(named, g_val)}
    flat_val = torch.cat([g.reshape(-1) for g in g_val])
    sub = list(range(min(n_loop, n_train)))
    head = train.subset(sub)
    head_ref = (rtr[0][sub], rtr[1][sub])

    def batched(tok_, ref_):
        return _batched_influence(model, tok_, ref_, targets, BETA, "sigmoid", "sum", if_batch, False, False)

    def loop(tok_, ref_):
        return np.array([float(flat_pair_gradient(model, tok_, ref_, i, BETA) @ flat_val) for i in range(len(tok_))])

    batched(head, head_ref), loop(head.subset([0, 1]), (head_ref[0][:2], head_ref[1][:2]))  # warm up
    for _ in range(2):  # interleaved, same pairs, best of two
        fast_head = T("batched_head", lambda: batched(head, head_ref))
        slow_head = T("loop_head", lambda: loop(head, head_ref))
    T("batched_all", lambda: batched(train, rtr))
    err = float(np.abs(fast_head - slow_head).max() / np.abs(slow_head).max())
    T("if_end2end", lambda: influence_scores(model, ref, train, val, beta=BETA, batch_size=if_batch, show_progress=False))

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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: stable numbers on a shared box)")
    ap.add_argument("--if-batch", type=int, default=32, help="pairs per batch for IF")
    ap.add_argument("--configs", default=None, help="comma list among tiny,bigger,large")
    ap.add_argument("--quick", action="store_true", help="small sizes, print only")
    ap.add_argument("--out", default=str(ROOT / "docs" / "PERFORMANCE.md"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
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
