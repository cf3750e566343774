"""Compare result tables a rerun just wrote with the committed ones, provenance columns aside.

    .venv/bin/python bench/compare_results.py tiny grid-qwen-dpo if_measurements [--ref HEAD]

For each NAME it reads figures/NAME_{summary,comparisons,score_diagnostics}.csv and figures/NAME.csv
(those that exist at REF) as text from the working tree and from git's REF, drops the provenance
columns (commit, source_hash, params_hash) and checks that the rest is equal cell for cell. Exit
status: the number of tables that differ (0: the rerun reproduced every committed number). Used
when a change of provenance-covered code lands with its rerun (docs/PERFORMANCE.md)."""
from __future__ import annotations

import argparse
import io
import subprocess
import sys

import pandas as pd

PROVENANCE = ["commit", "source_hash", "params_hash"]
KINDS = ("_summary", "_comparisons", "_score_diagnostics", "")


def committed(path: str, ref: str) -> str | None:
    r = subprocess.run(["git", "show", f"{ref}:{path}"], capture_output=True, text=True)
    return r.stdout if r.returncode == 0 else None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="+", help="result names, e.g. tiny, grid-qwen-dpo, if_measurements")
    ap.add_argument("--ref", default="HEAD", help="the git revision holding the committed tables (default HEAD)")
    args = ap.parse_args(argv)
    differ = 0
    for name in args.names:
        for kind in KINDS:
            path = f"figures/{name}{kind}.csv"
            old = committed(path, args.ref)
            if old is None:
                continue
            a = pd.read_csv(io.StringIO(old), dtype=str).drop(columns=PROVENANCE, errors="ignore")
            b = pd.read_csv(path, dtype=str).drop(columns=PROVENANCE, errors="ignore")
            same = a.equals(b)
            differ += not same
            print(f"{path}: {'equal to ' + args.ref + ' (provenance aside)' if same else 'DIFFERS from ' + args.ref}")
            if not same:
                print(a.compare(b) if a.shape == b.shape else f"  shapes {a.shape} vs {b.shape}")
    return differ


if __name__ == "__main__":
    sys.exit(main())
