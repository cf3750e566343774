"""Run `tifkit.scores.run_scoring` from the command line (used by tests/test_scores.py).

    python tests/_accelerate_score.py --models DIR --train T.parquet --val V.parquet --out O.parquet --work W
    accelerate launch --multi_gpu --num_processes 2 ... tests/_accelerate_score.py ...   (CPU: gloo)

DIR holds the checkpoint folders policy/, ref/ and val/. `--chunk-delay S` sleeps S seconds after
each chunk file is written (a test hook: gives a test time to kill the run between chunks).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser()
    for name in ("--models", "--train", "--val", "--out", "--work"):
        ap.add_argument(name, required=True)
    ap.add_argument("--chunk-size", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--influence", default="batched")
    ap.add_argument("--beta", type=float, default=0.5)
    ap.add_argument("--loss-type", default="sigmoid")
    ap.add_argument("--chunk-delay", type=float, default=0.0)
    args = ap.parse_args()

    import pandas as pd

    import tifkit.scores as scores
    from tifkit.losses import Objective
    from tifkit.models import ModelParams

    if args.chunk_delay > 0:
        write = scores._write_chunk

        def slow_write(*a, **kw):
            write(*a, **kw)
            time.sleep(args.chunk_delay)

        scores._write_chunk = slow_write
    params = scores.ScoreParams(chunk_size=args.chunk_size, batch_size=args.batch_size, influence=args.influence)
    objective = Objective(args.loss_type, args.beta, params.if_measure)
    out = scores.run_scoring(
        {k: Path(args.models) / k for k in ("policy", "ref", "val")},
        pd.read_parquet(args.train), pd.read_parquet(args.val), params, objective,
        out_path=args.out, work_dir=args.work, model_params=ModelParams(device="cpu"), show_progress=False,
    )
    print(f"wrote {out}", flush=True)


if __name__ == "__main__":
    main()
