"""Peak memory of one bf16 IF pass against the kit's estimate (`memory.estimate_scoring_memory`), on
the CPU by peak RSS (a GPU run: tests/test_realscale.py::test_gpu_memory_estimate_bounds_the_peak).

    .venv/bin/python bench/memory_check.py qwen3-0.6b 2 0.5 4 full     # shape, layers, length scale, pairs, full|lora
    .venv/bin/python bench/memory_check.py llama-3.2-1b 2 0.5 4 lora

Not a test: prints one line (measured extra peak over the weights, the estimate by part, their ratio).
"""
import os
import resource
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)
from tifkit.influence import ValidationTarget, trainable_parameters, validation_gradient  # noqa: E402
from tifkit.losses import Objective  # noqa: E402
from tifkit.memory import estimate_scoring_memory  # noqa: E402
from tifkit.shapes import build_shape, shape_config, synthetic_pairs  # noqa: E402

name, L, scale, B, lora = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "lora"
rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
cfg = shape_config(name, L)
tr, va = synthetic_pairs(B, cfg.vocab_size, 0, scale), synthetic_pairs(B, cfg.vocab_size, 1, scale)
m = build_shape(name, L, dtype=torch.bfloat16, lora=lora)
n = sum(p.numel() for p in m.parameters()); ntr = sum(p.numel() for _, p in trainable_parameters(m))
c, r = tr.sequence_lengths(); T = int(max(c.max(), r.max()))
est = estimate_scoring_memory(cfg, n, ntr, torch.bfloat16, B, T, n_models=1)
rt = (np.zeros(B) - 50, np.zeros(B) - 50); rv = rt
base = rss()
obj = Objective(beta=0.1)
g = validation_gradient(m, va, rv, obj, batch_size=B)
ValidationTarget(m, g, obj).scores(tr, rt, batch_size=B, verify=False, show_progress=False)
peak = rss()
w = sum(p.numel() * p.element_size() for p in m.parameters())
print(f"{name} L={L} lora={lora} B={B} T={T}: measured extra peak {(peak - base) / 2**30:.2f} GiB (+ weights {w / 2**30:.2f}); "
      f"estimate {est.total / 2**30:.2f} GiB = {est.describe()}; ratio measured/estimate {(peak - base + w) / est.total:.2f}")
