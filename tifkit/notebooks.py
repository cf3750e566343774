"""Run the notebooks as a papermill batch.

    python -m tifkit.notebooks                       # every notebook at full scale (params/tiny.yaml)
    python -m tifkit.notebooks --scale ci 02 03      # two notebooks at the toy CI scale
    python -m tifkit.notebooks --params params/tiny-qwen.yaml --out runs/notebooks-qwen 02
    python -m tifkit.notebooks --run-root runs/fresh 00         # full scale, nothing cached

Each notebook runs in a fresh `python3` kernel from the repository root with its `parameters` cell
overridden by: scale, params_file, figures_dir (``figures/`` at full scale, ``<out_dir>/figures`` at
ci scale so that CI leaves the repository clean), and any extra parameters given. Only parameters
the notebook declares are passed. Executed copies go to ``<out_dir>/<name>.ipynb``; the wall time of
each lands in ``<out_dir>/runtimes.csv``.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

from tifkit import TifkitError

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"


def available(notebook_dir: str | os.PathLike | None = None) -> list[str]:
    """Names (without .ipynb) of the notebooks, in order."""
    d = Path(notebook_dir or NOTEBOOK_DIR)
    return sorted(p.stem for p in d.glob("[0-9][0-9]_*.ipynb"))


def resolve(names=None, notebook_dir: str | os.PathLike | None = None) -> list[str]:
    """Full names from names, number prefixes ("02") or file names; all notebooks when None."""
    allnb = available(notebook_dir)
    if not names:
        return allnb
    out = []
    for n in names:
        stem = Path(str(n)).stem
        hits = [a for a in allnb if a == stem or a.split("_", 1)[0] == stem]
        if len(hits) != 1:
            raise TifkitError(f"No notebook named {n!r}; choose from {', '.join(allnb)} (or their numbers).")
        out.append(hits[0])
    return out


def run_notebooks(names=None, params_file: str = "params/tiny.yaml", out_dir: str | os.PathLike = "runs/notebooks",
                  scale: str = "full", kernel: str = "python3", figures_dir: str | None = None,
                  parameters: dict | None = None, notebook_dir: str | os.PathLike | None = None,
                  cwd: str | os.PathLike | None = None, timeout: int | None = None) -> list[Path]:
    """Execute each notebook with papermill; returns the paths of the executed copies.

    `parameters` are extra notebook parameters (e.g. {"seeds": [0], "overrides": ["train.lr=5e-5"]});
    `cwd` is where the kernels start (default: the repository root); `timeout` limits one cell
    (seconds). Raises papermill's PapermillExecutionError on the first failing notebook (its partly
    executed copy, with the traceback, is in out_dir).
    """
    import papermill as pm

    if scale not in ("ci", "full"):
        raise TifkitError(f"scale must be 'ci' or 'full', got {scale!r}.")
    nb_dir = Path(notebook_dir or NOTEBOOK_DIR)
    todo = resolve(names, nb_dir)  # before any folder is made: a bad name leaves nothing behind
    cwd = Path(cwd or nb_dir.parent)
    out_dir = Path(out_dir)
    if not out_dir.is_absolute():
        out_dir = cwd / out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    if figures_dir is None:
        figures_dir = "figures" if scale == "full" else str(out_dir / "figures")
    given = {"scale": scale, "params_file": str(params_file), "figures_dir": str(figures_dir), **(parameters or {})}
    paths = []
    for i, name in enumerate(todo, 1):
        src = nb_dir / f"{name}.ipynb"
        declared = set(pm.inspect_notebook(str(src)))
        params = {k: v for k, v in given.items() if k in declared}
        dst = out_dir / f"{name}.ipynb"
        print(f"[notebooks] {i}/{len(todo)} {name} ({scale}) ...", flush=True)
        t0 = time.time()
        pm.execute_notebook(str(src), str(dst), parameters=params, kernel_name=kernel, cwd=str(cwd),
                            progress_bar=False, execution_timeout=timeout, log_output=False)
        sec = time.time() - t0
        _write_runtimes(out_dir / "runtimes.csv", [(name, scale, round(sec, 1))])
        print(f"[notebooks] {name}: done in {sec:.0f} s -> {dst}", flush=True)
        paths.append(dst)
    return paths


def _write_runtimes(path: Path, rows) -> None:
    """Merge this run's timings into runtimes.csv (one row per notebook and scale)."""
    old = {}
    if path.exists():
        with open(path) as f:
            old = {(r["notebook"], r["scale"]): r["seconds"] for r in csv.DictReader(f)}
    for name, scale, sec in rows:
        old[(name, scale)] = sec
    from tifkit.io import atomic_write_text

    lines = ["notebook,scale,seconds"] + [f"{n},{s},{sec}" for (n, s), sec in sorted(old.items())]
    atomic_write_text(path, "\n".join(lines) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tifkit.notebooks", description="Run the notebooks with papermill.")
    ap.add_argument("names", nargs="*", help="notebooks by name or number (default: all)")
    ap.add_argument("--scale", choices=["ci", "full"], default="full")
    ap.add_argument("--params", default="params/tiny.yaml", help="params file given to every notebook")
    ap.add_argument("--out", default="runs/notebooks", help="folder of the executed copies")
    ap.add_argument("--figures", default=None, help="figures folder (default: figures/ at full scale)")
    ap.add_argument("--kernel", default="python3")
    ap.add_argument("--seeds", default=None, help="comma-separated seeds (default: the notebook's own)")
    ap.add_argument("--run-root", default=None, help="run.root of every notebook (default: runs/nb-ci at ci scale, "
                    "the params file's at full scale)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="parameter override passed to every notebook (repeatable)")
    args = ap.parse_args(argv)
    extra = {}
    if args.seeds:
        extra["seeds"] = [int(s) for s in args.seeds.split(",")]
    if args.overrides:
        extra["overrides"] = list(args.overrides)
    if args.run_root:
        extra["run_root"] = args.run_root
    try:
        paths = run_notebooks(args.names, args.params, args.out, args.scale, args.kernel, args.figures, extra)
    except TifkitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"[notebooks] {len(paths)} executed notebook(s) in {Path(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
