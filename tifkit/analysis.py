"""The analyses the notebooks show: every number and figure of notebooks/*.ipynb is computed here.

Notebooks only choose parameters, call these functions and display what they return; each
conclusion a notebook prints is written by a ``conclude_*`` function from the numbers, never by
hand. Ground-truth columns (``gt_*``) are read here for *evaluation* only (AUROC of finding the
mislabelled pairs, flip rates of groups); selection still never sees them.

Sections:

- notebook set-up: `notebook_setup`, `notebook_params` (``scale="ci"`` toy overrides or the params
  file as is), `notebook_seeds`, `family_params`, `show`;
- scores (claims 4, 5): `auroc`, `score_columns`, `score_report`, `overlap_sweep`, `venn_counts`,
  `score_tables`, `aggregate`;
- IF groups (claim 2): `if_groups`, `group_summary`, `train_on_groups`, `validation_metrics`,
  `group_experiment`;
- rules trained and evaluated (claims 3, 6): `rules_experiment`, `rule_difference`,
  `benchmark_table`;
- model dependence (claim 1): `family_tables`, `model_dependence`;
- cost (claim 7): `scoring_cost`;
- figures (tifkit.plots style) and ``conclude_*`` texts.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import warnings

import numpy as np
import pandas as pd
from scipy import stats

# tqdm.auto inside a kernel without ipywidgets warns once and falls back to text bars: say nothing
warnings.filterwarnings("ignore", message="IProgress not found")

from tifkit import TifkitError
from tifkit.io import content_hash

# ------------------------------------------------------------------------------------------------
# The paper's numbers (METHOD.md, "Paper results to put beside ours")

PAPER = {
    "corr_lossdiff_if": 0.77,  # correlation of LossDiff with IF (the paper does not say Pearson or Spearman)
    "corr_irm_if": 0.67,
    "overlap_lossdiff_irm": (0.73, 0.78),  # overlap coefficient with the TIF selection
    "overlap_single": (0.60, 0.70),  # LossDiff alone, IRM alone
    "cost_speedup": 120.0,  # ~5 minutes against ~10 hours on a 1B model
    "keep": 0.64,
}

# Llama-3.1-8B, DPO, 64% of UltraFeedback, WinRate % against the SFT model.
PAPER_WINRATES = pd.DataFrame(
    {"UltraFeedback": [77.61, 80.57, 82.68, 83.97], "AlpacaEval": [78.41, 81.09, 83.76, 87.08],
     "Vicuna": [73.75, 80.31, 76.88, 86.88], "Arena-Hard": [81.39, 84.30, 86.19, 88.40]},
    index=pd.Index(["full", "annotation-gap", "rm-margin", "lossdiff-irm"], name="rule"))

# The toy scale every notebook uses by default (CI, Colab): a minute or less on 2 CPU cores.
CI_OVERRIDES = [
    "world.n_sft=300", "world.n_train=96", "world.n_val=24", "world.n_test=32", "world.n_rm=32",
    "model.hidden_size=32", "train.batch_size=16", "score.rm_steps=40",
    "run.show_progress=false", "eval.batch_size=32",
]
CI_ROOT = "runs/nb-ci"
TINY_FAMILIES = ("llama", "qwen", "pythia", "gpt2")

# Rules whose selection is compared with TIF's, in display order.
OVERLAP_RULES = ("lossdiff-irm", "lossdiff", "irm", "top-if", "rm-margin", "annotation-gap", "random")
# Every rule the benchmark trains (oracle: the world's ground truth, an upper reference).
BENCH_RULES = ("full", "oracle", "random", "top-if", "tif", "lossdiff", "irm", "lossdiff-irm", "rm-margin",
               "annotation-gap")


# ------------------------------------------------------------------------------------------------
# Notebook set-up


def repo_root(start: str | os.PathLike | None = None) -> Path | None:
    """The nearest folder at or above `start` (default: cwd) holding params/ and tifkit/."""
    here = Path(start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / "params").is_dir() and (d / "tifkit").is_dir():
            return d
    return None


def notebook_setup(threads: int | None = None, chdir: bool = True) -> Path:
    """Offline, quiet, one figure style, `threads` torch threads (default: $TIFKIT_THREADS, else 1);
    cwd moved to the repository root (notebooks/ -> ..) so that
    params/ and runs/ paths are the same from Jupyter, papermill and Colab. Returns the cwd."""
    import logging
    import warnings

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    for name in ("transformers", "datasets", "trl", "accelerate"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        from datasets.utils.logging import disable_progress_bar
        from transformers.utils import logging as hf_logging

        disable_progress_bar()
        hf_logging.disable_progress_bar()
    except Exception:  # pragma: no cover - a library missing or changed
        pass
    import torch

    # one thread unless told otherwise: the tiny models gain nothing from more, and on a shared
    # machine several threads make timings erratic (docs/PERFORMANCE.md); GPUs are unaffected
    threads = threads or int(os.environ.get("TIFKIT_THREADS", "0") or 0) or 1
    torch.set_num_threads(threads)
    from tifkit.plots import style

    style()
    if chdir:
        root = repo_root()
        if root is not None and root != Path.cwd().resolve():
            os.chdir(root)
    return Path.cwd()


def notebook_params(params_file: str = "params/tiny.yaml", scale: str = "ci", overrides=(),
                    run_root: str | None = None, progress: bool = False):
    """Parameters of a notebook run: the params file, plus the toy overrides at ``scale="ci"``,
    plus `overrides` ("section.key=value"), with run.root set to `run_root` (default: runs/nb-ci at
    ci scale, the file's own run.root at full scale, so that full-scale notebooks reuse the batch's
    cached stages). Progress bars are off unless `progress` (the stages still say what they do)."""
    from tifkit.config import load_params

    if scale not in ("ci", "full"):
        raise TifkitError(f"scale must be 'ci' or 'full', got {scale!r}.")
    items = list(CI_OVERRIDES) if scale == "ci" else []
    items.append(f"run.show_progress={'true' if progress else 'false'}")
    if run_root is None and scale == "ci":
        run_root = CI_ROOT
    if run_root is not None:
        items.append(f"run.root={run_root}")
    items += list(overrides or [])
    return load_params(params_file, items)


def notebook_seeds(p, scale: str = "ci", seeds=None) -> list[int]:
    """`seeds` when given; one seed (run.seed) at ci scale; run.seeds at full scale."""
    if seeds is not None:
        return [int(s) for s in (seeds if isinstance(seeds, (list, tuple)) else [seeds])]
    return [p.run.seed] if scale == "ci" else list(p.run.seeds)


def family_params(params_file: str = "params/tiny.yaml", families=TINY_FAMILIES, params_files=None,
                  scale: str = "ci", overrides=(), run_root: str | None = None) -> dict:
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


def show(fig, path: str | os.PathLike) -> Path:
    """Save `fig` as PNG (tifkit.plots.save) and display it inline when running under IPython."""
    from tifkit.plots import save

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
    from tifkit.io import atomic_write_text

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


# ------------------------------------------------------------------------------------------------
# Scores: AUROC, correlation, overlap


def auroc(scores, positives, higher_is_positive: bool = False) -> float:
    """Area under the ROC curve of `scores` for finding `positives` (Mann-Whitney, ties count 1/2).

    With ``higher_is_positive=False`` (the default) a *low* score flags a positive, as a low IF,
    LossDiff or IRM flags a mislabelled pair. NaN when there are no positives or no negatives.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(positives, dtype=bool)
    if s.shape != y.shape:
        raise TifkitError(f"auroc got {len(s)} scores and {len(y)} labels; pass one label per score.")
    if np.isnan(s).any():
        raise TifkitError("auroc got NaN scores; drop or rescore those pairs first.")
    n1 = int(y.sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = stats.rankdata(s if higher_is_positive else -s)  # average ranks for ties
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def score_columns(table: pd.DataFrame) -> dict[str, np.ndarray]:
    """The per-pair scores a table holds, low = suspicious: if, lossdiff, irm, rm_margin and
    annotation_gap (score_chosen - score_rejected), each when present."""
    out = {}
    for col in ("if", "lossdiff", "irm", "rm_margin"):
        if col in table.columns:
            out[col] = table[col].to_numpy(dtype=np.float64)
    if "score_chosen" in table.columns and "score_rejected" in table.columns:
        out["annotation_gap"] = (table["score_chosen"].to_numpy(dtype=np.float64)
                                 - table["score_rejected"].to_numpy(dtype=np.float64))
    return out


_RULE_NEEDS = {"rm-margin": ("rm_margin",), "annotation-gap": ("score_chosen", "score_rejected"),
               "lossdiff": ("lossdiff",), "irm": ("irm",), "lossdiff-irm": ("lossdiff", "irm"),
               "top-if": ("if",), "tif": ("if",), "random": ()}


def _rule_available(table: pd.DataFrame, rule: str) -> bool:
    return all(c in table.columns for c in _RULE_NEEDS.get(rule, ()))


def selection(table: pd.DataFrame, rule: str, keep: float, select_params=None) -> np.ndarray:
    """The mask `tifkit.select.select` keeps for `rule` at `keep` (other fields from `select_params`)."""
    from tifkit.select import SelectParams, select

    base = select_params or SelectParams()
    return select(table, dataclasses.replace(base, rule=rule, keep=keep)).mask


def _paper_text(lo, hi) -> str:
    if lo is None or (isinstance(lo, float) and np.isnan(lo)):
        return ""
    return f"{lo:.2f}" if lo == hi else f"{lo:.2f}-{hi:.2f}"


def score_report(table: pd.DataFrame, keep: float = 0.64, select_params=None, rules=OVERLAP_RULES,
                 label_column: str = "gt_flipped") -> pd.DataFrame:
    """One row per statistic, with the paper's number beside ours where it gives one.

    Columns: section, name, statistic, value, paper (text), paper_lo, paper_hi.

    - ``auroc``: AUROC of each score (low score = mislabelled) for the pairs of `label_column`
      (skipped without it);
    - ``correlation``: Pearson and Spearman correlation of LossDiff and of IRM with IF;
    - ``overlap``: overlap coefficient |A n B| / min(|A|, |B|) of each rule's selection with the TIF
      selection, both at `keep` (rules whose columns the table lacks are skipped).
    """
    from tifkit.select import correlations, overlap_coefficient

    rows = []

    def add(section, name, statistic, value, lo=np.nan, hi=np.nan):
        rows.append({"section": section, "name": name, "statistic": statistic, "value": float(value),
                     "paper": _paper_text(lo, hi), "paper_lo": lo, "paper_hi": hi})

    scores = score_columns(table)
    if label_column in table.columns:
        y = table[label_column].to_numpy(dtype=bool)
        for name, s in scores.items():
            add("auroc", name, f"AUROC ({label_column}, low score)", auroc(s, y))
    if "if" in scores:
        for name, key in (("lossdiff", "corr_lossdiff_if"), ("irm", "corr_irm_if")):
            if name in scores:
                c = correlations(scores[name], scores["if"])
                add("correlation", name, "pearson with IF", c["pearson"], PAPER[key], PAPER[key])
                add("correlation", name, "spearman with IF", c["spearman"], PAPER[key], PAPER[key])
        tif = selection(table, "tif", keep, select_params)
        for rule in rules:
            if not _rule_available(table, rule):
                continue
            lo, hi = (PAPER["overlap_lossdiff_irm"] if rule == "lossdiff-irm" else
                      PAPER["overlap_single"] if rule in ("lossdiff", "irm") else (np.nan, np.nan))
            add("overlap", rule, f"overlap with TIF at keep {keep:g}",
                overlap_coefficient(selection(table, rule, keep, select_params), tif), lo, hi)
    return pd.DataFrame(rows, columns=["section", "name", "statistic", "value", "paper", "paper_lo", "paper_hi"])


def aggregate(frames: dict | list, by: list[str], value: str = "value") -> pd.DataFrame:
    """Mean, std and count of `value` over several runs (e.g. one `score_report` per seed),
    grouped by `by`; other columns of the first frame are kept (first value)."""
    if isinstance(frames, dict):
        frames = [f.assign(seed=k) for k, f in frames.items()]
    df = pd.concat(frames, ignore_index=True)
    g = df.groupby(by, sort=False, dropna=False)
    out = g[value].agg(["mean", "std", "count"]).rename(columns={"mean": value, "std": f"{value}_std",
                                                                  "count": "n_runs"})
    rest = [c for c in df.columns if c not in by + [value, "seed"]]
    if rest:
        out = out.join(g[rest].first())
    return out.reset_index()


def overlap_sweep(table: pd.DataFrame, keeps=(0.5, 0.56, 0.64, 0.72, 0.8), rules=("lossdiff-irm", "lossdiff", "irm",
                  "top-if", "random"), select_params=None) -> pd.DataFrame:
    """Overlap with the TIF selection of each rule at each keep ratio: columns keep, rule, overlap,
    n_kept, chance (the overlap a random subset of the same size would have on average: keep)."""
    from tifkit.select import overlap_coefficient

    rows = []
    for keep in keeps:
        tif = selection(table, "tif", keep, select_params)
        for rule in rules:
            if not _rule_available(table, rule):
                continue
            m = selection(table, rule, keep, select_params)
            rows.append({"keep": float(keep), "rule": rule, "overlap": overlap_coefficient(m, tif),
                         "n_kept": int(m.sum()), "chance": float(tif.mean())})
    return pd.DataFrame(rows)


def venn_counts(table: pd.DataFrame, keep: float = 0.64, rules=("tif", "lossdiff", "irm"),
                select_params=None) -> dict:
    """Sizes of the 7 regions of three selections' Venn diagram, keyed by membership strings such
    as "110" (in the first and second, not the third), plus "rules" and "n"."""
    masks = [selection(table, r, keep, select_params) for r in rules]
    out = {"rules": list(rules), "n": len(table)}
    for bits in ("100", "010", "001", "110", "101", "011", "111"):
        m = np.ones(len(table), dtype=bool)
        for b, mask in zip(bits, masks):
            m &= mask if b == "1" else ~mask
        out[bits] = int(m.sum())
    return out


def score_tables(p, seeds) -> dict[int, pd.DataFrame]:
    """{seed: score table} through the pipeline's cached stages (SFT, warm-up, val, scores)."""
    from tifkit.pipeline import prepare, score_stage

    out = {}
    for s in seeds:
        ctx = prepare(p, s)
        out[s] = pd.read_parquet(score_stage(ctx))
    return out


# ------------------------------------------------------------------------------------------------
# IF groups (claim 2)

GROUP_NAMES = {3: ("small", "medium", "large")}
GROUP_COLORS = {"small": "#c44e52", "medium": "#55a868", "large": "#4c72b0"}


def if_groups(table: pd.DataFrame, n_groups: int = 3, column: str = "if") -> dict[str, np.ndarray]:
    """Split the pairs into `n_groups` equal-size groups by the rank of `column` (ties by row order):
    {"small": mask, "medium": mask, "large": mask} for three, {"q1": ..., "qN": ...} otherwise,
    smallest values first. Sizes differ by at most one."""
    if column not in table.columns:
        raise TifkitError(f"IF groups need column '{column}' in the score table; score with influence enabled.")
    if not 1 <= n_groups <= len(table):
        raise TifkitError(f"n_groups={n_groups} must be between 1 and the number of pairs ({len(table)}).")
    values = table[column].to_numpy(dtype=np.float64)
    order = np.lexsort((np.arange(len(values)), values))
    names = GROUP_NAMES.get(n_groups, tuple(f"q{i + 1}" for i in range(n_groups)))
    out = {}
    for name, idx in zip(names, np.array_split(order, n_groups)):
        m = np.zeros(len(values), dtype=bool)
        m[idx] = True
        out[name] = m
    return out


def group_summary(table: pd.DataFrame, groups: dict[str, np.ndarray]) -> pd.DataFrame:
    """Per group: size, IF range and mean, mean LossDiff/IRM, and the share of mislabelled pairs
    (world only)."""
    rows = []
    for name, m in groups.items():
        t = table[np.asarray(m, dtype=bool)]
        row = {"group": name, "n": len(t), "if_min": t["if"].min(), "if_max": t["if"].max(), "if_mean": t["if"].mean()}
        for col in ("lossdiff", "irm"):
            if col in t:
                row[f"{col}_mean"] = t[col].mean()
        if "gt_flipped" in t:
            row["flipped_share"] = t["gt_flipped"].mean()
        rows.append(row)
    return pd.DataFrame(rows)


def validation_metrics(ctx, model_dir, pairs: pd.DataFrame | None = None) -> dict:
    """Mean preference loss and mean implicit reward margin h of a saved stage on `pairs` (default
    D_val), tokenized as TRL does: the numbers DPOTrainer logs as eval_loss and
    eval_rewards/margins."""
    from tifkit.influence import dpo_loss_per_pair
    from tifkit.logprobs import pair_logprobs, tokenize_pairs
    from tifkit.pipeline import load_stage, reference

    p = ctx.p
    pairs = ctx.val if pairs is None else pairs
    tok = tokenize_pairs(ctx.tokenizer, pairs, p.train.max_length)
    model = load_stage(ctx, Path(model_dir), trainable=False)
    pc, pr = pair_logprobs(model, tok, batch_size=p.score.batch_size, show_progress=False)
    rc, rr = pair_logprobs(reference(ctx), tok, batch_size=p.score.batch_size, show_progress=False)
    loss_type = {"dpo": "sigmoid", "slic": "hinge"}[p.train.objective]
    loss = dpo_loss_per_pair(pc, pr, rc, rr, p.train.beta, loss_type)
    margin = p.train.beta * ((pc - rc) - (pr - rr))
    # DPOTrainer's eval_loss is the per-pair mean; its reward metrics are means of per-batch means
    # over consecutive batches of train.batch_size pairs: averaged the same way here.
    batches = [slice(i, i + p.train.batch_size) for i in range(0, len(margin), p.train.batch_size)]
    return {"val_loss": float(np.mean(loss)),
            "val_margin": float(np.mean([margin[b].mean() for b in batches])),
            "val_accuracy": float(np.mean([(margin[b] > 0).mean() for b in batches]))}


@dataclass
class GroupTraining:
    """What `train_on_groups` returns.

    curves: one row per (group, evaluation): group, step, epoch, val_loss, val_margin, val_accuracy
        (step 0 is the warm-up model, the common start).
    model_dirs: {group: folder of the trained model} (save_pretrained; evaluate with evaluate_stage).
    labels: {group: label} unique per (group selection, schedule), for evaluate_stage's caches.
    """

    curves: pd.DataFrame
    model_dirs: dict[str, Path]
    labels: dict[str, str] = field(default_factory=dict)


def train_on_groups(ctx, groups: dict[str, np.ndarray], epochs: float | None = None, eval_steps: int | None = None,
                    n_points: int = 12) -> GroupTraining:
    """Continue DPO/SLiC from the warm-up model on each group's pairs, logging the loss and reward
    margin on D_val every `eval_steps` optimizer steps (default: about `n_points` points per curve).

    `epochs` defaults to train.continue_epochs (the schedule every selection gets). Each group's
    model and history are cached under ``<run_dir>/analysis/groups/<group>-<key>`` (key: the group's
    pair ids and the schedule; the run folder already keys the training parameters), so a rerun
    trains nothing.
    """
    from tifkit.pipeline import load_stage, reference, say, warmup_stage
    from tifkit.train import dpo_train, save_stage, stage_done

    p = ctx.p
    epochs = p.train.continue_epochs if epochs is None else float(epochs)
    warm = warmup_stage(ctx)
    start = validation_metrics(ctx, warm)
    curves, dirs, labels = [], {}, {}
    for name, mask in groups.items():
        mask = np.asarray(mask, dtype=bool)
        pairs = ctx.train[mask]
        if len(pairs) == 0:
            raise TifkitError(f"IF group '{name}' is empty; use fewer groups or more training pairs.")
        steps = int(np.ceil(len(pairs) / (p.train.batch_size * p.train.grad_accum)) * epochs)
        every = eval_steps or max(1, steps // n_points)
        key = content_hash({"ids": sorted(pairs.pair_id.astype(str)), "epochs": epochs, "eval_steps": every,
                            "train": dataclasses.asdict(p.train)}, 10)
        out = ctx.run_dir / "analysis" / "groups" / f"{name}-{key}"
        if not stage_done(out) or not (out / "history.parquet").exists():
            say(f"group '{name}': {len(pairs)} pairs, {epochs:g} epochs from warm-up, D_val every {every} steps -> {out}")
            model = load_stage(ctx, warm, trainable=True)
            model, hist = dpo_train(model, reference(ctx), ctx.tokenizer, pairs, p.train, epochs, seed=ctx.seed,
                                    device=str(ctx.device), show_progress=p.run.show_progress, eval_pairs=ctx.val,
                                    eval_steps=every)
            hist = pd.DataFrame([{k: v for k, v in h.items() if isinstance(v, (int, float))} for h in hist])
            save_stage(model, ctx.tokenizer, out, extra={"history": hist})
        hist = pd.read_parquet(out / "history.parquet")
        ev = hist[hist.get("eval_loss", pd.Series(dtype=float)).notna()] if "eval_loss" in hist else hist.iloc[:0]
        c = pd.DataFrame({"group": name, "step": ev["step"].astype(int).to_numpy(), "epoch": ev["epoch"].to_numpy(),
                          "val_loss": ev["eval_loss"].to_numpy(),
                          "val_margin": ev.get("eval_rewards/margins", pd.Series(np.nan, index=ev.index)).to_numpy(),
                          "val_accuracy": ev.get("eval_rewards/accuracies", pd.Series(np.nan, index=ev.index)).to_numpy()})
        c0 = pd.DataFrame([{"group": name, "step": 0, "epoch": 0.0, **start}])
        curves.append(pd.concat([c0, c], ignore_index=True))
        dirs[name] = out
        labels[name] = f"group-{out.name}"
    return GroupTraining(pd.concat(curves, ignore_index=True), dirs, labels)


def evaluate_models(ctx, model_dirs: dict, labels: dict | None = None) -> pd.DataFrame:
    """WinRate against SFT (and mean oracle/judge reward) of saved models on the test prompts:
    one row per name with winrate, winrate_lo, winrate_hi, reward, reward_sft, and the per-prompt
    verdicts as a list (for paired comparisons)."""
    from tifkit.pipeline import evaluate_stage

    rows = []
    for name, d in model_dirs.items():
        res = evaluate_stage(ctx, (labels or {}).get(name, name), d)
        t = res.table
        rows.append({"name": name, "winrate": res.winrate.estimate, "winrate_lo": res.winrate.lo,
                     "winrate_hi": res.winrate.hi, "reward": float(t.score_policy.mean()),
                     "reward_sft": float(t.score_ref.mean()), "verdicts": t.verdict_value.to_numpy()})
    return pd.DataFrame(rows)


def group_experiment(p, seeds, n_groups: int = 3, evaluate: bool = True) -> dict:
    """Claim 2 for every seed: score, split by IF, train on each group with D_val curves, and (when
    `evaluate`) the WinRate of each group's model against SFT. Returns {"curves", "summary",
    "winrates"} DataFrames, each with a seed column."""
    from tifkit.pipeline import prepare, score_stage

    curves, summaries, wins = [], [], []
    for s in seeds:
        ctx = prepare(p, s)
        table = pd.read_parquet(score_stage(ctx))
        groups = if_groups(table, n_groups)
        summaries.append(group_summary(table, groups).assign(seed=s))
        run = train_on_groups(ctx, groups)
        curves.append(run.curves.assign(seed=s))
        if evaluate:
            wins.append(evaluate_models(ctx, run.model_dirs, run.labels).assign(seed=s))
    return {"curves": pd.concat(curves, ignore_index=True), "summary": pd.concat(summaries, ignore_index=True),
            "winrates": pd.concat(wins, ignore_index=True) if wins else pd.DataFrame()}


def pooled_winrates(wins: pd.DataFrame, n_bootstrap: int = 2000) -> pd.DataFrame:
    """Pool `evaluate_models` rows of several seeds by name: WinRate with a bootstrap interval
    (prompts resampled within each seed)."""
    from tifkit.evaluate import bootstrap_interval

    rows = []
    for name, g in wins.groupby("name", sort=False):
        v = np.concatenate(g.verdicts.to_list())
        strata = np.concatenate([np.full(len(x), s) for x, s in zip(g.verdicts, g.seed)])
        wr = bootstrap_interval(v, n_bootstrap, 0, strata=strata)
        rows.append({"name": name, "n_seeds": len(g), "winrate": wr.estimate, "winrate_lo": wr.lo,
                     "winrate_hi": wr.hi, "reward": g.reward.mean(), "reward_sft": g.reward_sft.mean()})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------------
# Rules trained and evaluated (claims 3 and 6)


def rules_experiment(p, seeds, rules, keep: float | None = None) -> dict:
    """Train and evaluate each rule at `keep` (default select.keep) for each seed through the
    pipeline's cached stages (tifkit.batch.run_seed). Returns {"per_prompt", "summary"}: the
    per-prompt verdicts and tifkit.batch.summarize's table (WinRate vs SFT with a bootstrap
    interval, paired difference against full data when full is among the rules)."""
    from tifkit.batch import run_seed, summarize

    if keep is not None:
        p = dataclasses.replace(p, select=dataclasses.replace(p.select, keep=float(keep)))
    parts = [run_seed(p, s, list(rules)) for s in seeds]
    parts = [x[0] if isinstance(x, tuple) else x for x in parts]  # (per-prompt rows, score table) or rows
    per_prompt = pd.concat(parts, ignore_index=True)
    return {"per_prompt": per_prompt, "summary": summarize(per_prompt)}


def rule_difference(per_prompt: pd.DataFrame, a: str, b: str, n_bootstrap: int = 2000) -> dict:
    """WinRate(a) - WinRate(b) against SFT on the same prompts and seeds, with a paired bootstrap
    interval (prompts resampled within each seed)."""
    from tifkit.evaluate import paired_bootstrap_diff

    ga = per_prompt[per_prompt.rule == a].sort_values(["seed", "prompt_idx"])
    gb = per_prompt[per_prompt.rule == b].sort_values(["seed", "prompt_idx"])
    if len(ga) == 0 or len(gb) == 0:
        raise TifkitError(f"Rules '{a}' and '{b}' must both be in the per-prompt table to compare them.")
    d = paired_bootstrap_diff(ga.verdict.to_numpy(), gb.verdict.to_numpy(), n_bootstrap, 0, strata=ga.seed.to_numpy())
    return {"a": a, "b": b, "diff": d.estimate, "lo": d.lo, "hi": d.hi,
            "winrate_a": float(ga.verdict.mean()), "winrate_b": float(gb.verdict.mean())}


def _fmt_interval(est, lo, hi, pct: bool = True) -> str:
    if not np.isfinite(est):
        return ""
    f = 100.0 if pct else 1.0
    return f"{f * est:.1f} [{f * lo:.1f}, {f * hi:.1f}]"


def benchmark_table(summaries: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per rule; per family "WinRate % [95% interval]" and the paired differences "vs full"
    and "vs random" (points, from tifkit.batch.summarize), then the paper's UltraFeedback WinRate
    (Llama-3.1-8B, DPO, 64%)."""
    rules = []
    for s in summaries.values():
        rules += [r for r in s.rule if r not in rules]
    out = pd.DataFrame(index=pd.Index(rules, name="rule"))
    for fam, s in summaries.items():
        s = s.set_index("rule")
        out[f"{fam} WinRate %"] = [_fmt_interval(*s.loc[r, ["winrate_vs_sft", "winrate_lo", "winrate_hi"]])
                                   if r in s.index else "" for r in rules]
        for base in ("full", "random"):
            cols = [f"diff_vs_{base}", f"diff_vs_{base}_lo", f"diff_vs_{base}_hi"]
            if all(c in s for c in cols):
                out[f"{fam} vs {base}"] = [_fmt_interval(*s.loc[r, cols]) if r in s.index and r != base
                                           and np.isfinite(s.loc[r, cols[0]]) else "" for r in rules]
    out["paper UltraFeedback %"] = [f"{PAPER_WINRATES.loc[r, 'UltraFeedback']:.2f}" if r in PAPER_WINRATES.index
                                    else "" for r in rules]
    return out


# ------------------------------------------------------------------------------------------------
# Model dependence (claim 1)


def family_tables(params_by_family: dict, seed: int | None = None) -> dict[str, pd.DataFrame]:
    """{family: score table} for the same world seed under each family's parameters. Raises when
    the families' training pairs differ (their world or data parameters must match)."""
    from tifkit.pipeline import prepare, score_stage

    out, first = {}, None
    for fam, p in params_by_family.items():
        ctx = prepare(p, p.run.seed if seed is None else seed)
        cols = ["pair_id", "prompt", "chosen", "rejected"]
        if first is None:
            first = (fam, ctx.train[cols].reset_index(drop=True))
        elif not ctx.train[cols].reset_index(drop=True).equals(first[1]):
            raise TifkitError(f"Families '{first[0]}' and '{fam}' train on different pairs; give them the same "
                              "world/data parameters and seed.")
        out[fam] = pd.read_parquet(score_stage(ctx))
    return out


def init_control_tables(p, seed: int, init_seeds=(100, 101)) -> dict[str, pd.DataFrame]:
    """The within-family baseline of claim 1: the same family and the same pairs (world seed `seed`),
    models initialized (and fed) with other seeds. {"<family> init <seed>": score table}, the
    regular run first.

    Workaround: the pipeline ties the model seed to the world seed (Context.seed serves both). Here
    the context is prepared for the world seed and its `seed` then set to the init seed, under a
    separate run root ``<run.root>/init-control-w<seed>`` and run name ``<name>-init<k>``, so no
    cached stage is mistaken for a regular run's.
    """
    from tifkit.pipeline import prepare, score_stage

    fam = p.model.family if p.model.is_tiny else p.run.name
    out = {f"{fam} init {seed}": family_tables({fam: p}, seed)[fam]}
    for k in init_seeds:
        if int(k) == int(seed):
            continue
        q = dataclasses.replace(p, run=dataclasses.replace(p.run, root=str(Path(p.run.root) / f"init-control-w{seed}"),
                                                           name=f"{p.run.name}-init{k}"))
        ctx = prepare(q, seed)
        ctx.seed = int(k)
        out[f"{fam} init {k}"] = pd.read_parquet(score_stage(ctx))
    return out


@dataclass
class ModelDependence:
    """What `model_dependence` returns (square DataFrames indexed by family).

    pearson, spearman: correlation of the same pairs' IF under two families.
    tif_overlap: overlap coefficient of the two families' TIF selections at `keep`.
    sign_disagreement: share of pairs with IF > 0 under one family and IF < 0 under the other.
    helps_hurts: [a, b] share of pairs with IF > 0 under a and IF < 0 under b (a pair that helps a
        and hurts b); sign_disagreement = helps_hurts + helps_hurts.T.
    if_values: the aligned IF columns (one per family), pairs as rows.
    """

    pearson: pd.DataFrame
    spearman: pd.DataFrame
    tif_overlap: pd.DataFrame
    sign_disagreement: pd.DataFrame
    helps_hurts: pd.DataFrame
    if_values: pd.DataFrame
    keep: float = 0.64
    flipped: pd.Series | None = None  # gt_flipped of the aligned pairs (world only), for the breakdown

    def pairs(self) -> pd.DataFrame:
        """One row per unordered pair of families with every statistic."""
        fams = list(self.pearson.index)
        rows = []
        for i, a in enumerate(fams):
            for b in fams[i + 1:]:
                rows.append({"family_a": a, "family_b": b, "pearson": self.pearson.loc[a, b],
                             "spearman": self.spearman.loc[a, b], "tif_overlap": self.tif_overlap.loc[a, b],
                             "sign_disagreement": self.sign_disagreement.loc[a, b],
                             "helps_a_hurts_b": self.helps_hurts.loc[a, b],
                             "helps_b_hurts_a": self.helps_hurts.loc[b, a]})
                if self.flipped is not None:
                    f = self.flipped.to_numpy(dtype=bool)
                    change = np.sign(self.if_values[a].to_numpy()) * np.sign(self.if_values[b].to_numpy()) < 0
                    rows[-1]["sign_disagreement_clean"] = float(change[~f].mean()) if (~f).any() else float("nan")
                    rows[-1]["sign_disagreement_flipped"] = float(change[f].mean()) if f.any() else float("nan")
        return pd.DataFrame(rows)


def model_dependence(tables_by_family: dict[str, pd.DataFrame], keep: float = 0.64,
                     select_params=None) -> ModelDependence:
    """Compare the IF of the same pairs (matched by pair_id) under several families."""
    from tifkit.select import overlap_coefficient

    fams = list(tables_by_family)
    if len(fams) < 2:
        raise TifkitError("model_dependence needs score tables of at least two families.")
    merged = None
    for fam, t in tables_by_family.items():
        if "if" not in t.columns or "pair_id" not in t.columns:
            raise TifkitError(f"The score table of '{fam}' needs 'pair_id' and 'if' columns.")
        part = t[["pair_id", "if"]].rename(columns={"if": fam})
        merged = part if merged is None else merged.merge(part, on="pair_id", how="inner")
    if len(merged) < 3:
        raise TifkitError(f"The families share only {len(merged)} pair ids; score the same pairs under each.")
    first = next(iter(tables_by_family.values()))
    flipped = None
    if "gt_flipped" in first.columns:
        flipped = merged[["pair_id"]].merge(first[["pair_id", "gt_flipped"]], on="pair_id", how="left")
        flipped = flipped.set_index("pair_id")["gt_flipped"].astype(bool)
    V = merged.set_index("pair_id")[fams]
    tif = {f: selection(V[[f]].rename(columns={f: "if"}), "tif", keep, select_params) for f in fams}
    pos = {f: V[f].to_numpy() > 0 for f in fams}
    neg = {f: V[f].to_numpy() < 0 for f in fams}

    def square(fn):
        return pd.DataFrame([[fn(a, b) for b in fams] for a in fams], index=fams, columns=fams)

    hh = square(lambda a, b: float(np.mean(pos[a] & neg[b])))
    return ModelDependence(
        pearson=V.corr(method="pearson"), spearman=V.corr(method="spearman"),
        tif_overlap=square(lambda a, b: overlap_coefficient(tif[a], tif[b])),
        sign_disagreement=hh + hh.T, helps_hurts=hh, if_values=V, keep=keep, flipped=flipped)


# ------------------------------------------------------------------------------------------------
# Cost (claim 7)


def scoring_cost(ctx, n_pairs: int = 64, methods=("lossdiff-irm", "if-batched", "if-loop"),
                 batch_size: int | None = None) -> pd.DataFrame:
    """Wall time of scoring the first `n_pairs` training pairs at the warm-up model.

    - ``lossdiff-irm``: log-probs under the policy, the reference and the validation model (three
      forward passes), then the arithmetic of IRM and LossDiff;
    - ``if-batched`` / ``if-loop``: exact IF (tifkit.influence.influence_scores), reference log-probs
      and the validation gradient included.

    Columns: method, seconds, pairs_per_s, vs_lossdiff_irm (time relative to LossDiff-IRM),
    seconds_full (extrapolated to all of D_tr). Needs the warm-up and validation stages (trains
    them when missing). Timings on a shared machine vary; run twice and read the second."""
    from tifkit.influence import dpo_loss_per_pair, influence_scores
    from tifkit.logprobs import pair_logprobs, tokenize_pairs
    from tifkit.pipeline import load_stage, reference, val_stage, warmup_stage

    p = ctx.p
    bs = batch_size or p.score.batch_size
    loss_type = {"dpo": "sigmoid", "slic": "hinge"}[p.train.objective]
    ml = p.score.max_length if p.score.max_length is not None else p.train.max_length
    sub = ctx.train.iloc[:n_pairs]
    tok = tokenize_pairs(ctx.tokenizer, sub, ml)
    val_tok = tokenize_pairs(ctx.tokenizer, ctx.val, ml)
    policy = load_stage(ctx, warmup_stage(ctx), trainable=True)
    val_model = load_stage(ctx, val_stage(ctx), trainable=False)
    ref = reference(ctx)
    rows, results = [], {}
    for method in methods:
        t0 = time.perf_counter()
        if method == "lossdiff-irm":
            pc, pr = pair_logprobs(policy, tok, batch_size=bs, show_progress=False)
            rc, rr = pair_logprobs(ref, tok, batch_size=bs, show_progress=False)
            vc, vr = pair_logprobs(val_model, tok, batch_size=bs, show_progress=False)
            irm = p.train.beta * ((pc - rc) - (pr - rr))
            ld = dpo_loss_per_pair(pc, pr, rc, rr, p.train.beta, loss_type) - dpo_loss_per_pair(vc, vr, rc, rr, p.train.beta, loss_type)
            results[method] = (irm, ld)
        elif method in ("if-batched", "if-loop"):
            results[method] = influence_scores(policy, ref, tok, val_tok, p.train.beta, loss_type,
                                               method=method.split("-")[1], batch_size=bs, verify=False,
                                               show_progress=False)
        else:
            raise TifkitError(f"Unknown cost method {method!r}; use lossdiff-irm, if-batched or if-loop.")
        sec = time.perf_counter() - t0
        rows.append({"method": method, "n_pairs": len(sub), "seconds": sec, "pairs_per_s": len(sub) / sec,
                     "seconds_full": sec * len(ctx.train) / len(sub)})
    df = pd.DataFrame(rows)
    if "lossdiff-irm" in set(df.method):
        df["vs_lossdiff_irm"] = df.seconds / float(df.loc[df.method == "lossdiff-irm", "seconds"].iloc[0])
    if "if-batched" in results and "if-loop" in results:
        a, b = results["if-batched"], results["if-loop"]
        df.attrs["if_max_rel_diff"] = float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))
    return df


# ------------------------------------------------------------------------------------------------
# Conclusions (text computed from the numbers)


def reward_frame(results: dict) -> pd.DataFrame:
    """label/reward rows for tifkit.plots.reward_distribution from {label: EvalResult}; "sft" is
    taken from the first result's reference column."""
    first = next(iter(results.values()))
    parts = [pd.DataFrame({"label": "sft", "reward": first.table.score_ref.to_numpy()})]
    parts += [pd.DataFrame({"label": lab, "reward": r.table.score_policy.to_numpy()}) for lab, r in results.items()]
    return pd.concat(parts, ignore_index=True)


def conclude_quickstart(res, label: str = "full-data DPO") -> str:
    """Did preference training improve on the SFT model (oracle reward, WinRate vs SFT)?"""
    t, w = res.table, res.winrate
    r0, r1 = float(t.score_ref.mean()), float(t.score_policy.mean())
    c = res.counts
    state = ("beats" if w.lo > 0.5 else "loses to" if w.hi < 0.5 else "is not distinguishable from")
    return (f"{label} {state} the SFT model: WinRate {w.estimate:.3f} [95% {w.lo:.3f}, {w.hi:.3f}] on {len(t)} "
            f"test prompts (win/tie/loss {c['win']}/{c['tie']}/{c['loss']}); mean oracle reward {r0:.3f} -> {r1:.3f}.")


def _get(report: pd.DataFrame, section: str, name: str, statistic_prefix: str = "") -> float:
    r = report[(report.section == section) & (report.name == name) & report.statistic.str.startswith(statistic_prefix)]
    return float(r.value.iloc[0]) if len(r) else float("nan")


def conclude_correlation(report: pd.DataFrame) -> str:
    """Claim 4: LossDiff and IRM correlate positively with IF (Pearson and Spearman), LossDiff more."""
    v = {(n, s): _get(report, "correlation", n, s) for n in ("lossdiff", "irm") for s in ("pearson", "spearman")}
    if any(np.isnan(x) for x in v.values()):
        return "Claim 4 cannot be checked: the score table lacks IF, LossDiff or IRM."
    positive = all(x > 0 for x in v.values())
    stronger = v[("lossdiff", "pearson")] > v[("irm", "pearson")] and v[("lossdiff", "spearman")] > v[("irm", "spearman")]
    nums = (f"LossDiff~IF Pearson {v[('lossdiff', 'pearson')]:.3f} / Spearman {v[('lossdiff', 'spearman')]:.3f} "
            f"(paper {PAPER['corr_lossdiff_if']:.2f}); IRM~IF Pearson {v[('irm', 'pearson')]:.3f} / Spearman "
            f"{v[('irm', 'spearman')]:.3f} (paper {PAPER['corr_irm_if']:.2f})")
    if positive and stronger:
        verdict = "Claim 4 reproduces: both proxies correlate positively with IF and LossDiff more strongly than IRM"
    elif positive:
        verdict = ("Claim 4 reproduces only in part: both proxies correlate positively with IF, but LossDiff is "
                   "not the stronger one on both measures")
    else:
        verdict = "Claim 4 does not reproduce: not every correlation with IF is positive"
    return f"{verdict}. {nums}."


def conclude_auroc(report: pd.DataFrame) -> str:
    """Which score best flags the mislabelled pairs (AUROC, 0.5 = chance)."""
    a = report[report.section == "auroc"]
    if a.empty:
        return "No ground truth in the table: AUROC not computed."
    parts = ", ".join(f"{r.name} {r.value:.3f}" for r in a.sort_values("value", ascending=False).itertuples())
    return f"AUROC for finding the mislabelled pairs (low score = flagged; 0.5 is chance): {parts}."


def conclude_overlap(sweep: pd.DataFrame) -> str:
    """Claim 5: LossDiff-IRM overlaps TIF more than either proxy alone (at every keep ratio)."""
    piv = sweep.pivot_table(index="keep", columns="rule", values="overlap")
    need = {"lossdiff-irm", "lossdiff", "irm"}
    if not need <= set(piv.columns):
        return "Claim 5 cannot be checked: the table lacks LossDiff or IRM."
    wins = piv["lossdiff-irm"] > piv[["lossdiff", "irm"]].max(axis=1)
    nums = "; ".join(f"keep {k:g}: fusion {r['lossdiff-irm']:.3f}, LossDiff {r['lossdiff']:.3f}, IRM {r['irm']:.3f}"
                     for k, r in piv.iterrows())
    if wins.all():
        verdict = f"Claim 5 reproduces: LossDiff-IRM overlaps TIF more than either proxy alone at all {len(wins)} keep ratios"
    elif wins.any():
        verdict = (f"Claim 5 reproduces only in part: LossDiff-IRM overlaps TIF more than either proxy alone at "
                   f"{int(wins.sum())} of {len(wins)} keep ratios ({', '.join(f'{k:g}' for k in piv.index[wins])})")
    else:
        verdict = "Claim 5 does not reproduce: LossDiff-IRM never overlaps TIF more than the better single proxy"
    row = piv.loc[piv.index[np.argmin(np.abs(piv.index - PAPER["keep"]))]]
    lo, hi = PAPER["overlap_lossdiff_irm"]
    slo, shi = PAPER["overlap_single"]
    paper = (f" Paper: fusion {lo:.2f}-{hi:.2f}, single proxies {slo:.2f}-{shi:.2f}; ours at keep {row.name:g}: "
             f"fusion {row['lossdiff-irm']:.2f}, single {min(row['lossdiff'], row['irm']):.2f}-"
             f"{max(row['lossdiff'], row['irm']):.2f}; a random subset overlaps about "
             f"{sweep[sweep.keep == row.name].chance.iloc[0]:.2f}.")
    return f"{verdict}. {nums}.{paper}"


def conclude_groups(curves: pd.DataFrame, winrates: pd.DataFrame | None = None, tol: float = 0.0) -> str:
    """Claim 2 from the D_val curves (mean over seeds) and, when given, the groups' WinRates.

    Checked: (a) medium ends with a lower validation loss than small and large; (b) medium ends
    with a larger margin than small and large; (c) small raises the validation loss above the
    warm-up model's; (d) large overfits: its validation loss ends above its minimum (by more than
    `tol`), or its WinRate on the test prompts is below medium's although its validation loss is
    lower (it fits the validation proxy, not the task)."""
    mean = curves.groupby(["group", "step"], sort=False)[["val_loss", "val_margin"]].mean().reset_index()
    need = {"small", "medium", "large"}
    if not need <= set(mean.group):
        return "Claim 2 needs the small, medium and large IF groups."
    last = mean.sort_values("step").groupby("group").last()
    start = float(mean[mean.step == 0].val_loss.mean())
    L, M = last.val_loss, last.val_margin
    a = L["medium"] < min(L["small"], L["large"])
    b = M["medium"] > max(M["small"], M["large"])
    c = L["small"] > start
    lg = mean[mean.group == "large"].sort_values("step")
    rise = float(lg.val_loss.iloc[-1] - lg.val_loss.min())
    rebound = float((lg.val_loss - lg.val_loss.cummin()).max())  # largest rise above the running minimum
    d_curve = rise > tol
    lines = [f"validation loss: warm-up {start:.4f}; final small {L['small']:.4f}, medium {L['medium']:.4f}, "
             f"large {L['large']:.4f}; final margin small {M['small']:.3f}, medium {M['medium']:.3f}, large {M['large']:.3f}."]
    checks = [("medium ends with the lowest validation loss", a), ("medium ends with the largest margin", b),
              ("small-IF raises the validation loss above the warm-up model's", c),
              (f"large-IF's validation loss ends above its minimum (by {rise:.4f}; largest rebound on the way "
               f"{rebound:.4f})", d_curve)]
    d_win = None
    if winrates is not None and len(winrates):
        w = winrates.set_index("name")
        if need <= set(w.index):
            d_win = w.loc["large", "winrate"] < w.loc["medium", "winrate"]
            lines.append(f"WinRate vs SFT: small {w.loc['small', 'winrate']:.3f}, medium {w.loc['medium', 'winrate']:.3f}, "
                         f"large {w.loc['large', 'winrate']:.3f}.")
            checks.append(("large-IF's model wins less often than medium's on the test prompts", d_win))
            checks.append(("medium's model wins most often", w.loc["medium", "winrate"] >= w.winrate.max()))
    held = [t for t, ok in checks if ok]
    failed = [t for t, ok in checks if not ok]
    core = a and c and (d_curve or bool(d_win))
    verdict = ("Claim 2 reproduces" if core and not failed else
               "Claim 2 reproduces in part" if held else "Claim 2 does not reproduce")
    return (f"{verdict}. Holds: {'; '.join(held) or 'none'}. Does not hold: {'; '.join(failed) or 'none'}. "
            + " ".join(lines))


def conclude_difference(d: dict, claim: str, what: str) -> str:
    """One sentence on a paired WinRate difference (from `rule_difference`)."""
    nums = (f"WinRate vs SFT {d['a']} {d['winrate_a']:.3f}, {d['b']} {d['winrate_b']:.3f}; difference "
            f"{d['diff']:+.3f} [95% {d['lo']:+.3f}, {d['hi']:+.3f}]")
    if d["lo"] > 0:
        return f"{claim} reproduces: {what} (the interval excludes 0). {nums}."
    if d["diff"] > 0:
        return f"{claim} points the paper's way but is not significant here: {what} on average, interval includes 0. {nums}."
    if d["hi"] < 0:
        return f"{claim} does not reproduce: the opposite holds (the interval excludes 0). {nums}."
    return f"{claim} does not reproduce here: no advantage ({nums})."


def conclude_benchmark(results: dict[str, dict]) -> str:
    """Claim 6 per family: LossDiff-IRM beats full data and the filters (annotation-gap, rm-margin)."""
    lines = []
    for fam, res in results.items():
        pp = res["per_prompt"]
        if "lossdiff-irm" not in set(pp.rule):
            lines.append(f"{fam}: LossDiff-IRM not run.")
            continue
        parts, sig, better = [], 0, 0
        others = [r for r in ("full", "annotation-gap", "rm-margin") if r in set(pp.rule)]
        for other in others:
            d = rule_difference(pp, "lossdiff-irm", other)
            better += d["diff"] > 0
            sig += d["lo"] > 0
            parts.append(f"vs {other} {d['diff']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}]")
        state = ("beats all" if sig == len(others) else f"beats {better} of {len(others)} on average "
                 f"({sig} significantly)")
        lines.append(f"{fam}: LossDiff-IRM {state} ({'; '.join(parts)}).")
    n_all = sum("beats all" in ln for ln in lines)
    verdict = ("Claim 6 reproduces in every family" if n_all == len(results) else
               f"Claim 6 reproduces in {n_all} of {len(results)} families")
    return verdict + ": " + " ".join(lines)


def conclude_model_dependence(md, agree: float = 0.9, control=None, margin: float = 0.1) -> str:
    """Claim 1: IF of the same pairs disagrees across families. Reproduces when the average
    cross-family Spearman correlation is below `agree` and some pairs change IF sign. `md` is one
    ModelDependence or a list of them (one per seed; the statistics are averaged).

    With `control` (a ModelDependence of one family under several initializations,
    `init_control_tables`) the disagreement must also exceed the within-family one: the mean
    cross-family Spearman must be at least `margin` below the within-family Spearman; otherwise the
    disagreement is put down to initialization, not to the family."""
    mds = md if isinstance(md, (list, tuple)) else [md]
    pr = pd.concat([m.pairs() for m in mds], ignore_index=True)
    pr = pr.groupby(["family_a", "family_b"], sort=False).mean(numeric_only=True).reset_index()
    rho, flip, ov = pr.spearman.mean(), pr.sign_disagreement.mean(), pr.tif_overlap.mean()
    lo = pr.loc[pr.spearman.idxmin()]
    nums = (f"mean cross-family Spearman {rho:.3f} (lowest {lo.family_a}~{lo.family_b} {lo.spearman:.3f}); "
            f"mean share of pairs whose IF changes sign {flip:.3f} (helps one model, hurts the other); "
            f"mean overlap of TIF selections at keep {mds[0].keep:g} {ov:.3f}")
    if "sign_disagreement_clean" in pr:
        nums += (f"; sign changes among correctly labelled pairs {pr.sign_disagreement_clean.mean():.3f}, among "
                 f"mislabelled pairs {pr.sign_disagreement_flipped.mean():.3f}")
    if len(mds) > 1:
        nums += f"; averaged over {len(mds)} seeds"
    if not (rho < agree and flip > 0):
        return f"Claim 1 does not reproduce: IF ranks agree across families (Spearman >= {agree}) ({nums})."
    if control is None:
        return f"Claim 1 reproduces: the value of a pair depends on the model ({nums})."
    cp = control.pairs()
    within, wflip = float(cp.spearman.mean()), float(cp.sign_disagreement.mean())
    ctl = (f"within one family across {len(control.spearman)} initializations: Spearman {within:.3f}, "
           f"sign changes {wflip:.3f}")
    if within - rho >= margin:
        note = (f" IF is itself unstable across initializations of one family (Spearman {within:.2f} < {agree}): "
                "much of the disagreement is seed dependence, the family adds to it." if within < agree else "")
        return (f"Claim 1 reproduces: families disagree more than initializations of one family do "
                f"({nums}; {ctl}).{note}")
    return (f"Claim 1 reproduces only weakly: IF disagrees across families, but about as much across "
            f"initializations of one family, so the disagreement cannot be put down to the family ({nums}; {ctl}).")


def conclude_cost(cost: pd.DataFrame) -> str:
    """Claim 7: LossDiff-IRM scoring is about two orders of magnitude cheaper than exact IF."""
    c = cost.set_index("method")
    parts = [f"{m}: {c.loc[m, 'seconds']:.2f} s for {int(c.loc[m, 'n_pairs'])} pairs ({c.loc[m, 'vs_lossdiff_irm']:.1f}x)"
             for m in c.index]
    best = max((c.loc[m, "vs_lossdiff_irm"] for m in c.index if m.startswith("if-")), default=float("nan"))
    if not np.isfinite(best):
        return "Claim 7 not checked: no exact IF timing."
    verdict = ("Claim 7 reproduces" if best >= 100 else
               f"Claim 7 does not reproduce at this model size: exact IF costs at most {best:.1f}x LossDiff-IRM "
               f"here, not ~{PAPER['cost_speedup']:.0f}x (the gap grows with the number of parameters; see docs/PERFORMANCE.md)")
    return f"{verdict}. {'; '.join(parts)}."


# ------------------------------------------------------------------------------------------------
# Figures (tifkit.plots style)


def _plt():
    import matplotlib.pyplot as plt

    from tifkit.plots import style

    style()
    return plt


def plot_score_scatter(table: pd.DataFrame, report: pd.DataFrame | None = None, max_points: int = 4000):
    """LossDiff and IRM against IF, mislabelled pairs (world) in red, correlations in the titles."""
    plt = _plt()
    report = score_report(table) if report is None else report
    t = table.sample(min(len(table), max_points), random_state=0) if len(table) > max_points else table
    flipped = t["gt_flipped"].to_numpy(dtype=bool) if "gt_flipped" in t else np.zeros(len(t), dtype=bool)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, col, label in zip(axes, ("lossdiff", "irm"), ("LossDiff", "IRM")):
        ax.scatter(t["if"][~flipped], t[col][~flipped], s=8, alpha=0.5, color="#4c72b0", label="clean")
        if flipped.any():
            ax.scatter(t["if"][flipped], t[col][flipped], s=8, alpha=0.6, color="#c44e52", label="mislabelled")
        ax.set_xlabel("IF (first-order influence on validation loss)")
        ax.set_ylabel(label)
        ax.set_title(f"{label} vs IF: Pearson {_get(report, 'correlation', col, 'pearson'):.2f}, "
                     f"Spearman {_get(report, 'correlation', col, 'spearman'):.2f}")
        ax.legend(frameon=False, loc="best")
    fig.tight_layout()
    return fig


def plot_auroc(report: pd.DataFrame, std: pd.Series | None = None):
    """Bar chart of each score's AUROC for the mislabelled pairs."""
    plt = _plt()
    a = report[report.section == "auroc"]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    err = a["value_std"].fillna(0).to_numpy() if "value_std" in a else None
    names = a.name.tolist()
    ax.bar(names, a.value, yerr=err, color=["#ccb974" if n == "if" else "#8172b2" for n in names], capsize=3)
    ax.axhline(0.5, color="#333333", ls="--", lw=1, label="chance")
    for i, v in enumerate(a.value):
        ax.text(i, v + 0.02, f"{v:.2f}", ha="center", va="bottom")
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("AUROC (low score = mislabelled)")
    ax.legend(frameon=False)
    fig.tight_layout()
    return fig


def plot_group_curves(curves: pd.DataFrame):
    """Validation loss and margin against training steps for each IF group (mean over seeds, with
    each seed faint when there are several)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    seeds = sorted(curves.seed.unique()) if "seed" in curves else [None]
    for ax, col, label in zip(axes, ("val_loss", "val_margin"), ("validation loss", "validation reward margin")):
        for g in curves.group.unique():
            c = curves[curves.group == g]
            color = GROUP_COLORS.get(g)
            if len(seeds) > 1:
                for s in seeds:
                    cs = c[c.seed == s].sort_values("step")
                    ax.plot(cs.step, cs[col], color=color, alpha=0.25, lw=1)
            m = c.groupby("step")[col].mean()
            ax.plot(m.index, m.values, color=color, lw=2, marker="o", ms=3, label=f"{g} IF")
        ax.set_xlabel("optimizer step (continuation from the warm-up model)")
        ax.set_ylabel(label)
        ax.legend(frameon=False)
    fig.tight_layout()
    return fig


def plot_winrates(summary: pd.DataFrame, title: str = "", name_col: str = "rule", ax=None):
    """Horizontal WinRate-vs-SFT bars with 95% intervals, one per rule (or group)."""
    from tifkit.plots import color

    plt = _plt()
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 0.45 * len(summary) + 1.2))
    s = summary.reset_index(drop=True)
    est = s["winrate_vs_sft"] if "winrate_vs_sft" in s else s["winrate"]
    y = np.arange(len(s))[::-1]
    ax.barh(y, est, xerr=[est - s.winrate_lo, s.winrate_hi - est], capsize=3,
            color=[GROUP_COLORS.get(n, color(n)) for n in s[name_col]])
    ax.set_yticks(y, s[name_col])
    ax.axvline(0.5, color="#333333", ls="--", lw=1)
    if "full" in set(s[name_col]):
        ax.axvline(float(est[s[name_col] == "full"].iloc[0]), color=color("full"), ls=":", lw=1.5)
    ax.set_xlim(0, 1)
    ax.set_xlabel("WinRate vs SFT (oracle judge), 95% interval")
    if title:
        ax.set_title(title)
    if fig is not None:
        fig.tight_layout()
    return fig if fig is not None else ax.figure


def plot_benchmark(summaries: dict[str, pd.DataFrame]):
    """One WinRate panel per family."""
    plt = _plt()
    n = len(summaries)
    rows = max(len(s) for s in summaries.values())
    fig, axes = plt.subplots(1, n, figsize=(4.6 * n, 0.42 * rows + 1.4), squeeze=False)
    for ax, (fam, s) in zip(axes[0], summaries.items()):
        plot_winrates(s, title=fam, ax=ax)
    fig.tight_layout()
    return fig


def plot_overlap_sweep(sweep: pd.DataFrame):
    """Overlap with TIF against the keep ratio for each rule; the paper's ranges shaded."""
    from tifkit.plots import color

    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4))
    lo, hi = PAPER["overlap_lossdiff_irm"]
    ax.axhspan(lo, hi, color=color("lossdiff-irm"), alpha=0.12, label="paper: LossDiff-IRM")
    lo, hi = PAPER["overlap_single"]
    ax.axhspan(lo, hi, color="#999999", alpha=0.12, label="paper: single proxies")
    for rule in sweep.rule.unique():
        s = sweep[sweep.rule == rule].groupby("keep").overlap.agg(["mean", "std"]).reset_index()
        ax.errorbar(s.keep, s["mean"], yerr=s["std"].fillna(0), marker="o", ms=4, capsize=2, color=color(rule),
                    lw=2.5 if rule == "lossdiff-irm" else 1.5, label=rule)
    ch = sweep.groupby("keep").chance.mean()
    ax.plot(ch.index, ch.values, color="#333333", ls="--", lw=1, label="chance (= keep)")
    ax.set_xlabel("keep ratio")
    ax.set_ylabel("overlap coefficient with the TIF selection")
    ax.set_ylim(0, 1.02)
    ax.legend(frameon=False, fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def plot_venn3(counts: dict, title: str = ""):
    """A three-set Venn diagram (circles of equal size, region counts written in)."""
    from matplotlib.patches import Circle

    from tifkit.plots import color

    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 4.6))
    centers = [(-0.55, 0.35), (0.55, 0.35), (0.0, -0.55)]
    names = counts["rules"]
    for (x, y), name in zip(centers, names):
        ax.add_patch(Circle((x, y), 1.0, alpha=0.25, color=color(name)))
        ax.add_patch(Circle((x, y), 1.0, fill=False, color=color(name), lw=1.5))
    pos = {"100": (-1.05, 0.7), "010": (1.05, 0.7), "001": (0.0, -1.2), "110": (0.0, 0.85),
           "101": (-0.75, -0.4), "011": (0.75, -0.4), "111": (0.0, 0.05)}
    for k, (x, y) in pos.items():
        ax.text(x, y, str(counts[k]), ha="center", va="center", fontsize=11)
    for (x, y), name, dy in zip(centers, names, (1.15, 1.15, -1.15)):
        ax.text(x, y + dy, name, ha="center", va="center", fontsize=11, weight="bold")
    ax.set_xlim(-1.9, 1.9)
    ax.set_ylim(-1.9, 1.75)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title or f"selections at keep; {counts['n']} pairs")
    fig.tight_layout()
    return fig


def plot_dependence(md: ModelDependence, max_points: int = 3000):
    """Spearman and sign-disagreement heatmaps, and the IF of the first two families against each other."""
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for ax, mat, title, cmap in ((axes[0], md.spearman, "Spearman of IF", "viridis"),
                                 (axes[1], md.sign_disagreement, "share of pairs whose IF changes sign", "magma")):
        im = ax.imshow(mat.to_numpy(), cmap=cmap, vmin=0 if "share" in title else -1, vmax=1 if "Spearman" in title else
                       max(0.5, float(mat.to_numpy().max())))
        ax.set_xticks(range(len(mat)), mat.columns)
        ax.set_yticks(range(len(mat)), mat.index)
        ax.grid(False)
        lo, hi = im.get_clim()
        for i in range(len(mat)):
            for j in range(len(mat)):
                v = mat.iloc[i, j]
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=9,
                        color="black" if (v - lo) / (hi - lo) > 0.6 else "white")
        ax.set_title(title)
        fig.colorbar(im, ax=ax, shrink=0.8)
    a, b = md.if_values.columns[:2]
    v = md.if_values.sample(min(len(md.if_values), max_points), random_state=0)
    ax = axes[2]
    ax.scatter(v[a], v[b], s=6, alpha=0.5, color="#4c72b0")
    ax.axhline(0, color="#333333", lw=0.8)
    ax.axvline(0, color="#333333", lw=0.8)
    ax.set_xlabel(f"IF under {a}")
    ax.set_ylabel(f"IF under {b}")
    ax.set_title(f"same pairs, {a} vs {b}")
    fig.tight_layout()
    return fig
