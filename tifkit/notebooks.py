"""Notebook set-up (scales, parameters, figures) and the papermill batch runner.

    python -m tifkit.notebooks                       # every notebook at full scale (params/tiny.yaml)
    python -m tifkit.notebooks --scale ci 02 03      # two notebooks at the toy CI scale
    python -m tifkit.notebooks --sync                # notebooks/*.ipynb from their jupytext sources
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
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tifkit import TifkitError
from tifkit.config import load_params
from tifkit.io import atomic_write_text
from tifkit.models import TINY_FAMILIES
from tifkit.plots import save, style
from tifkit.results import REPO as REPO_DIR
from tifkit.results import batch_difference as committed_difference
from tifkit.workers import quiet_libraries

# Three scales (docs/NOTEBOOKS.md):
# - "default": what "Run all" gives a reader: the params file as is (2,000 pairs), one seed, a few
#   minutes per notebook on 2 CPU cores; the real result for that seed.
# - "ci": a toy world (96 pairs) that only checks the notebook runs (make test sets it through
#   $TIFKIT_NOTEBOOK_SCALE, since nbmake runs notebooks as committed); its numbers are not results.
# - "full": the params file's every seed (and, where a notebook has them, every family); what
#   `make reproduce` runs after the batch, whose cached stages it reuses.
SCALES = ("default", "ci", "full")
SCALE_ENV = "TIFKIT_NOTEBOOK_SCALE"
# At this scale the notebooks run their trainings in the kernel's own process (run.workers=1): starting
# a worker process (its torch imports) costs more than a toy training. A notebook's `workers` parameter
# still overrides it. SFT takes 60 steps instead of 400: the SFTs were most of a ci-scale notebook's
# time (notebook 05: 58 -> 32 CPU s, bench/notebook_cpu.py), and this scale checks code, not results.
CI_OVERRIDES = [
    "world.n_sft=300", "world.n_train=96", "world.n_val=24", "world.n_test=32", "world.n_rm=32",
    "model.hidden_size=32", "sft.steps=60", "train.batch_size=16", "score.rm_steps=40",
    "run.show_progress=false", "eval.batch_size=32", "run.workers=1",
]
CI_ROOT = "runs/nb-ci"
# Where the repository is published: the Colab badges and the Colab install cell point here.
REPO = "tifkit/tifkit"
REPO_URL = f"https://github.com/{REPO}"


def resolve_scale(scale: str | None = None) -> str:
    """`scale`, else $TIFKIT_NOTEBOOK_SCALE, else "default"."""
    scale = scale or os.environ.get(SCALE_ENV) or "default"
    if scale not in SCALES:
        raise TifkitError(f"scale must be one of {', '.join(SCALES)}, got {scale!r} (check ${SCALE_ENV}).")
    return scale


def repo_root(start: str | os.PathLike | None = None) -> Path | None:
    """The nearest folder at or above `start` (default: cwd) holding params/ and tifkit/."""
    here = Path(start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / "params").is_dir() and (d / "tifkit").is_dir() and (d / "pyproject.toml").is_file():
            return d
    return None


def notebook_setup(threads: int | None = None, chdir: bool = True) -> Path:
    """Offline, quiet, one figure style, `threads` torch threads (default: $TIFKIT_THREADS, else 1:
    the tiny models gain nothing from more; notebooks that run several models at once use worker
    processes instead). Inside a clone of the repository the cwd moves to its root, so that runs/
    lands in one place whether the notebook runs from Jupyter, papermill or nbmake; anywhere else
    (Colab, a notebook copied alone into a folder) the cwd stays and params come from the
    installed package. Returns the cwd."""
    quiet_libraries()
    import torch

    threads = threads or int(os.environ.get("TIFKIT_THREADS", "0") or 0) or 1
    torch.set_num_threads(threads)
    style()
    if chdir:
        root = repo_root()
        if root is not None and root != Path.cwd().resolve():
            os.chdir(root)
    return Path.cwd()


def notebook_params(params_file: str = "tiny.yaml", scale: str | None = None, overrides=(),
                    run_root: str | None = None, progress: bool = False):
    """Parameters of a notebook run: the params file (a path, or the name of a packaged file such as
    "tiny.yaml"), plus the toy overrides at ``scale="ci"``, plus `overrides` ("section.key=value"),
    with run.root set to `run_root` (default: runs/nb-ci at ci scale, the file's own run.root
    otherwise, so that notebooks reuse the batch's cached stages). Progress bars are off unless
    `progress` (the stages still say what they do)."""
    scale = resolve_scale(scale)
    items = list(CI_OVERRIDES) if scale == "ci" else []
    items.append(f"run.show_progress={'true' if progress else 'false'}")
    if run_root is None and scale == "ci":
        run_root = CI_ROOT
    if run_root is not None:
        items.append(f"run.root={run_root}")
    items += list(overrides or [])
    return load_params(params_file, items)


def notebook_seeds(p, scale: str | None = None, seeds=None) -> list[int]:
    """`seeds` when given; one seed (run.seed) at the default and ci scales; at full scale
    run.study_seeds (the notebooks' own studies), else run.seeds."""
    if seeds is not None:
        return [int(s) for s in (seeds if isinstance(seeds, (list, tuple)) else [seeds])]
    if resolve_scale(scale) != "full":
        return [p.run.seed]
    return list(p.run.study_seeds if p.run.study_seeds is not None else p.run.seeds)


def family_params(params_file: str = "tiny.yaml", families=TINY_FAMILIES, params_files=None,
                  scale: str | None = None, overrides=(), run_root: str | None = None) -> dict:
    """{family: Params}: one params file per family (`params_files`), or `params_file` with
    model.family set to each of `families` (run.name "<name>-<family>", the file's own family keeping
    the plain name, as params/tiny-qwen.yaml etc. do, so their cached stages are shared)."""
    out = {}
    if params_files:
        for f in params_files:
            p = notebook_params(f, scale, overrides, run_root)
            out[p.model.family if p.model.is_tiny else p.run.name] = p
        return out
    base = notebook_params(params_file, scale, overrides, run_root)
    for fam in families:
        extra = [] if fam == base.model.family else [f"model.family={fam}", f"run.name={base.run.name}-{fam}"]
        out[fam] = notebook_params(params_file, scale, list(overrides or []) + extra, run_root)
    return out


@dataclass
class NotebookRun:
    """What `start` returns: the notebook's parameters, seeds and figure folder, and its clock."""

    name: str
    scale: str
    p: object  # tifkit.config.Params
    seeds: list[int]
    fig_dir: Path
    default_params: bool = False  # params/tiny.yaml without overrides: the default batch's parameters
    t_start: float = field(default_factory=time.time)

    @property
    def prefix(self) -> str:
        return f"{self.name[:2]}_{self.p.run.name}"

    def figure(self, fig, stem: str) -> None:
        """Save `fig` as ``<fig_dir>/<nn>_<run name>_<stem>.png`` and display it inline. Returns None,
        so that a figure at the end of a cell leaves no ``PosixPath(...)`` echo under it."""
        show(fig, self.fig_dir / f"{self.prefix}_{stem}.png")

    def batch_difference(self, a: str, b: str) -> dict | None:
        """Rule `a` minus rule `b` from the default batch's committed results
        (`tifkit.results.batch_difference`), or None unless this run is at full scale on the default
        parameters: the batch's numbers belong beside no other run's."""
        if self.scale != "full" or not self.default_params:
            return None
        return committed_difference(a, b, self.p.run.name)

    def batch_diagnostics(self):
        """The default batch's committed score diagnostics (``figures/<run name>_score_diagnostics.csv``:
        per score statistic its mean, sd and seed count over the batch's seeds) as an aggregated score
        report (tifkit.report.aggregate's columns: value, value_std, n_runs), or None unless this run is
        at full scale on the default parameters and the file is there."""
        import pandas as pd

        path = Path(REPO_DIR) / "figures" / f"{self.p.run.name}_score_diagnostics.csv"
        if self.scale != "full" or not self.default_params or not path.exists():
            return None
        d = pd.read_csv(path).rename(columns={"mean": "value", "std": "value_std", "count": "n_runs"})
        return d[["section", "name", "statistic", "value", "value_std", "n_runs"]]

    def finish(self, **numbers) -> None:
        """Write the notebook's key numbers and conclusions as ``<nn>_<run name>_summary.json`` (and say
        where; returns None, so that no path is echoed under the last cell)."""
        sec = round(time.time() - self.t_start, 1)
        path = save_json({"notebook": self.name, "scale": self.scale, "seeds": self.seeds, **numbers,
                          "seconds": sec}, self.fig_dir / f"{self.prefix}_summary.json")
        print(f"done in {sec:.0f} s; numbers in {path}")


def start(name: str, scale: str | None = None, params_file: str = "tiny.yaml", overrides=(), seeds=None,
          run_root: str | None = None, figures_dir: str | None = None, own_data: bool = False) -> NotebookRun:
    """The set-up cell of every notebook: quiet offline libraries, parameters at the chosen scale,
    seeds, the figure folder (default: ``<run.root>/figures``; the papermill batch passes figures/),
    and a banner that says what scale the numbers below are at (and the built-in world's size, unless
    `own_data`: the notebook then names the user's file and model itself)."""
    notebook_setup()
    scale = resolve_scale(scale)
    p = notebook_params(params_file, scale, overrides, run_root)
    run = NotebookRun(name, scale, p, notebook_seeds(p, scale, seeds),
                      Path(figures_dir) if figures_dir else Path(p.run.root) / "figures",
                      default_params=Path(params_file).name == "tiny.yaml" and not list(overrides or []))
    run.fig_dir.mkdir(parents=True, exist_ok=True)
    import pandas as pd

    pd.set_option("display.width", 160)
    pd.set_option("display.precision", 4)
    pd.set_option("display.max_columns", 30)
    what = {"default": "the params file as is, one seed: the real result for that seed",
            "ci": "CI SCALE: a toy world that only checks that the notebook runs. Its numbers are NOT results; "
                  "run with scale = \"default\" (or unset $TIFKIT_NOTEBOOK_SCALE) for those",
            "full": "every seed of run.study_seeds (run.seeds when unset)"}[scale]
    print(f"scale={scale} ({what})")
    print(f"params={params_file}  family={p.model.family}  seeds={run.seeds}  run root={p.run.root}")
    data = ("data: your pairs and model (named below)" if own_data else
            f"world: {p.world.n_train} training pairs, {p.world.n_val} validation pairs, {p.world.n_test} test prompts")
    print(f"{data}; {p.train.objective.upper()}, beta={p.train.beta}, keep={p.select.keep}")
    return run


def show(fig, path: str | os.PathLike) -> Path:
    """Save `fig` as PNG (tifkit.plots.save) and display it inline when running under IPython."""
    path = save(fig, path)
    try:
        from IPython import get_ipython
        from IPython.display import Image, display

        if get_ipython() is not None:
            display(Image(filename=str(path)))
    except ImportError:  # pragma: no cover
        pass
    return path


def save_json(obj, path: str | os.PathLike) -> Path:
    """Write `obj` as JSON (atomic); the notebooks leave their key numbers next to their figures."""
    return atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default))


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o).__name__)


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


def _paired_notebook(py: Path):
    """The .ipynb that belongs with the jupytext percent script `py`: its cells, no outputs, stable
    cell ids ("00-03": notebook number, cell index), the kernelspec and jupytext pairing metadata."""
    import jupytext
    import nbformat

    nb = jupytext.read(py)
    nb.metadata = {"jupytext": {"formats": "ipynb,py:percent"},
                   "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                   "language_info": {"name": "python"}}
    for i, c in enumerate(nb.cells):
        c.id = f"{py.stem[:2]}-{i:02d}"
        if c.cell_type == "code":
            c.outputs, c.execution_count = [], None
        c.metadata = {k: v for k, v in c.metadata.items() if k == "tags"}
    nbformat.validator.normalize(nb)
    return nbformat.writes(nb) + "\n"


def sync_notebooks(notebook_dir: str | os.PathLike | None = None, check: bool = False) -> list[str]:
    """Write each notebooks/NN_*.ipynb from its jupytext source NN_*.py (outputs stripped, stable ids).
    With `check`, write nothing and return the names whose .ipynb is missing or differs."""
    d = Path(notebook_dir or NOTEBOOK_DIR)
    stale = []
    for py in sorted(d.glob("[0-9][0-9]_*.py")):
        text = _paired_notebook(py)
        ipynb = py.with_suffix(".ipynb")
        if not ipynb.exists() or ipynb.read_text() != text:
            stale.append(py.stem)
            if not check:
                atomic_write_text(ipynb, text)
    return stale


def kernel_config():
    """The kernel settings of papermill runs (this runner, `tifkit report`): the kernels talk to the
    runner over local IPC sockets (files in Jupyter's runtime folder) where the OS has them, rather than
    over unencrypted TCP on localhost, about which ipykernel warns on every start. A socket's path must
    fit the OS limit (104 bytes on macOS, 108 on Linux): with a runtime folder too long for its
    ``kernel-<uuid>-ipc-<n>`` files, TCP it is (and its warning)."""
    # papermill's own dependencies, needed only with it
    from jupyter_core.paths import jupyter_runtime_dir
    from traitlets.config import Config

    longest = len(os.path.join(jupyter_runtime_dir(), "kernel-00000000-0000-0000-0000-000000000000-ipc-99"))
    ipc = os.name == "posix" and longest < 100
    return Config({"KernelManager": {"transport": "ipc"}} if ipc else {})


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

    scale = resolve_scale(scale)
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
                            progress_bar=False, execution_timeout=timeout, log_output=False, config=kernel_config())
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
    lines = ["notebook,scale,seconds"] + [f"{n},{s},{sec}" for (n, s), sec in sorted(old.items())]
    atomic_write_text(path, "\n".join(lines) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="tifkit notebooks", description="Run the notebooks with papermill.")
    ap.add_argument("names", nargs="*", help="notebooks by name or number (default: all)")
    ap.add_argument("--scale", choices=list(SCALES), default="full",
                    help="default: one seed at the real size; ci: toy; full: every seed (default of this runner)")
    ap.add_argument("--params", default="params/tiny.yaml", help="params file given to every notebook")
    ap.add_argument("--out", default="runs/notebooks", help="folder of the executed copies")
    ap.add_argument("--figures", default=None, help="figures folder (default: figures/ at full scale)")
    ap.add_argument("--kernel", default="python3")
    ap.add_argument("--seeds", default=None, help="comma-separated seeds (default: the notebook's own)")
    ap.add_argument("--run-root", default=None, help="run.root of every notebook (default: runs/nb-ci at ci scale, "
                    "the params file's at full scale)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="parameter override passed to every notebook (repeatable)")
    ap.add_argument("--sync", action="store_true", help="write notebooks/*.ipynb from their jupytext sources "
                    "notebooks/*.py (outputs stripped) and exit")
    args = ap.parse_args(argv)
    if args.sync:
        for name in sync_notebooks():
            print(f"[notebooks] wrote {name}.ipynb from {name}.py")
        return 0
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
