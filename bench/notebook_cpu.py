"""Wall and CPU seconds of one notebook run, kernel and its worker processes included.

    .venv/bin/python bench/notebook_cpu.py 05_model_dependence                       # ci scale, empty root
    .venv/bin/python bench/notebook_cpu.py 05_model_dependence --set workers=2       # with two workers
    .venv/bin/python bench/notebook_cpu.py 01_tif_vs_if --scale default --root /tmp/nb01

The notebook runs under papermill in a fresh kernel with an empty run root (`--root`: emptied first
only when this benchmark made it, else it must be empty or new;
default /tmp/tifkit-notebook-cpu/<name>) at `--scale` (default ci), and any notebook parameter given
by `--set name=value` (value read as YAML). CPU seconds are those of every finished child process
(the kernel waits for its workers, so theirs are counted); on a shared machine they are the number
to compare, since the wall time then depends on the other jobs. docs/NOTEBOOKS.md quotes it for the
ci scale's `workers` default.
"""
from __future__ import annotations

import argparse
import resource
import shutil
import sys
import time
from pathlib import Path

import papermill as pm
import yaml

ROOT = Path(__file__).resolve().parents[1]
MARKER = ".notebook-cpu-root"  # only a folder holding it is ever emptied


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebook", help="notebook name without .ipynb, e.g. 05_model_dependence")
    ap.add_argument("--scale", default="ci", choices=["ci", "default", "full"])
    ap.add_argument("--root", help="run root, emptied first (default /tmp/tifkit-notebook-cpu/<notebook>)")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="notebook parameter")
    args = ap.parse_args(argv)
    src = ROOT / "notebooks" / f"{args.notebook}.ipynb"
    if not src.is_file():
        sys.exit(f"no notebook {src}")
    root = Path(args.root or f"/tmp/tifkit-notebook-cpu/{args.notebook}").resolve()
    marker = root / MARKER
    if root.exists() and any(root.iterdir()) and not marker.is_file():
        sys.exit(f"{root} is not empty and was not made by this benchmark; give an empty or new --root")
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    marker.write_text("made by bench/notebook_cpu.py; emptied by its next run\n")
    params = {"scale": args.scale, "run_root": str(root / "runs"), "figures_dir": str(root / "figures")}
    for item in args.set:
        name, _, value = item.partition("=")
        params[name] = yaml.safe_load(value)
    t0 = time.time()
    pm.execute_notebook(str(src), str(root / src.name), parameters=params, progress_bar=False, cwd=str(ROOT))
    wall = time.time() - t0
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    extra = " ".join(args.set) or "default parameters"
    print(f"{args.notebook} at {args.scale} scale ({extra}): wall {wall:.1f} s, CPU {r.ru_utime + r.ru_stime:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
