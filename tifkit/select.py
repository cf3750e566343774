"""Selection rules on a score table, plus overlap and correlation (pure numpy/pandas, no torch).

A score table has one row per training pair; `select` returns a boolean mask over its rows (in row
order) that keeps `round(keep * n)` pairs. Each rule is an entry of the registry (tifkit.rules),
registered at the end of this module beside its selection function; the built-in rules and the
columns they read:

| rule             | column(s)                          | keeps                                          |
|------------------|------------------------------------|------------------------------------------------|
| `full`           | -                                  | every pair                                     |
| `random`         | -                                  | a seeded random subset                         |
| `top-if`         | `if`                               | the largest IF (classical selection)           |
| `tif`            | `if`                               | a middle percentile band of IF (TIF)           |
| `lossdiff`       | `lossdiff`                         | a middle percentile band of LossDiff           |
| `irm`            | `irm`                              | a middle percentile band of IRM                |
| `lossdiff-irm`   | `lossdiff`, `irm`                  | the intersection of two bands of equal width   |
| `rm-margin`      | `rm_margin`                        | the largest reward-model margin                |
| `annotation-gap` | `score_chosen`, `score_rejected`   | the largest annotated score gap                |
| `oracle`         | `gt_flipped` of the pair table     | the pairs the world did not mislabel (control) |

Percentile ranks are ordinal: values are sorted stably (by value, then by row order), so tied
values are split by row order and every count is reachable. A band of width `w` centred at `c`
covers the ordinal positions `[round(c*n - w*n/2), ... )`, shifted inside `[0, n)` when it would
stick out. Columns starting with `gt_` are never read, except by `oracle`, the batch's ground-truth
control (tifkit.pipeline.selection_mask hands it the pair table; `tifkit select` does not offer it).

Decisions of ours (the paper is silent; each is a parameter): score directions (`*_sign`,
`top_if_largest`), the band centre (`band_center`), explicit TIF edges (`tif_lo`, `tif_hi`), and
how LossDiff-IRM hits the target exactly when the intersection jumps by two pairs (the pair
farthest from the band centre is dropped).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import partial
import numpy as np
import pandas as pd
from scipy import stats

from tifkit import TifkitError
from tifkit.config import Rule, SelectParams  # noqa: F401  (parameter section; lives in config.py)
from tifkit.rules import Picked, get_rule, register_rule

# How to get each score column, for the "missing column" message.
_ANNOTATION = ("the data file holds no annotation scores: give it numeric `score_chosen` and `score_rejected` "
               "columns (tifkit keeps them when present), or pick another rule")
_SOURCES = {
    "if": "compute it with `tifkit score` with influence enabled (tifkit.scores.score_table)",
    "lossdiff": "compute it with `tifkit score` (tifkit.scores.score_table)",
    "irm": "compute it with `tifkit score` (tifkit.scores.score_table)",
    "rm_margin": "compute it with tifkit.reward.rm_margins(model, tokenizer, pairs) and a reward model",
    "score_chosen": _ANNOTATION,
    "score_rejected": _ANNOTATION,
}


@dataclass
class SelectionResult:
    """What `select` returns.

    mask: boolean array over the table's rows (row order), True = kept.
    keep: the requested fraction (1.0 for `full`, tif_hi - tif_lo for explicit TIF edges);
        `n_kept` is the count actually kept.
    bands: per score column, the band used: `lo`/`hi` percentiles (fractions of n) and
        `lo_value`/`hi_value` (smallest and largest raw value inside the band).
    details: rule-specific extras (column read, band width, pairs trimmed, seed, ...).
    """

    mask: np.ndarray
    rule: str
    keep: float
    n_kept: int
    bands: dict[str, dict[str, float]] = field(default_factory=dict)
    details: dict = field(default_factory=dict)

    def kept(self, table: pd.DataFrame) -> pd.DataFrame:
        """The kept rows of `table` (the table `select` was given)."""
        return table[self.mask]


# ---------------------------------------------------------------------------------------------
# helpers


def _column(table: pd.DataFrame, name: str, rule: str) -> np.ndarray:
    """Return column `name` as float64, with a clear error when it is missing or holds NaNs."""
    if name.startswith("gt_"):
        raise TifkitError(f"Rule '{rule}' may not read ground-truth column '{name}'; pick a score column.")
    if name not in table.columns:
        source = _SOURCES.get(name, "compute it with the scoring stage")
        raise TifkitError(f"Rule '{rule}' needs column '{name}', which the score table lacks; {source}.")
    values = pd.to_numeric(table[name], errors="coerce").to_numpy(dtype=np.float64)
    n_nan = int(np.isnan(values).sum())
    if n_nan:
        raise TifkitError(
            f"Column '{name}' has {n_nan} NaN (or non-numeric) value(s) of {len(values)}; "
            "drop or rescore those pairs before selecting."
        )
    return values


def _order(values: np.ndarray, descending: bool = False) -> np.ndarray:
    """Row indices sorted by value (stable: ties keep row order), ascending or descending."""
    rows = np.arange(len(values))
    return np.lexsort((rows, -values if descending else values))


def _positions(values: np.ndarray) -> np.ndarray:
    """Ordinal rank of each row (0 = smallest; ties by row order)."""
    pos = np.empty(len(values), dtype=np.int64)
    pos[_order(values)] = np.arange(len(values))
    return pos


def _band_start(n: int, m: int, center: float) -> int:
    """First ordinal position of a band of m positions centred at `center`, kept inside [0, n)."""
    return int(min(max(round(center * n - m / 2), 0), n - m))


def _band_info(raw: np.ndarray, pos: np.ndarray, start: int, end: int) -> dict[str, float]:
    """Percentile edges and raw-value range of the ordinal band [start, end)."""
    n = len(raw)
    inside = raw[(pos >= start) & (pos < end)]
    return {
        "lo": start / n if n else 0.0,
        "hi": end / n if n else 0.0,
        "lo_value": float(inside.min()) if len(inside) else float("nan"),
        "hi_value": float(inside.max()) if len(inside) else float("nan"),
    }


def _top(values: np.ndarray, k: int, largest: bool) -> np.ndarray:
    mask = np.zeros(len(values), dtype=bool)
    mask[_order(values, descending=largest)[:k]] = True
    return mask


def score_column(table: pd.DataFrame, name: str, rule: str) -> np.ndarray:
    """Column `name` of a score table as float64 for rule `rule`'s selection function; a missing
    column, NaNs or a ground-truth (`gt_`) column raise TifkitError naming the rule."""
    return _column(table, name, rule)


def top_k(values, k: int) -> np.ndarray:
    """Mask of the `k` largest `values` (ties by row order): the building block of "keep the best" rules."""
    return _top(np.asarray(values, dtype=np.float64), k, largest=True)


def _check_params(p: SelectParams) -> None:
    if not (0 < p.keep <= 1):
        raise TifkitError(f"keep={p.keep} is outside (0, 1]; set select.keep to a fraction such as 0.64.")
    if not (0 <= p.band_center <= 1):
        raise TifkitError(f"band_center={p.band_center} is outside [0, 1]; set it to a percentile such as 0.5.")
    for name in ("if_sign", "lossdiff_sign", "irm_sign"):
        if getattr(p, name) not in (1, -1):
            raise TifkitError(f"{name}={getattr(p, name)} must be +1 or -1.")
    for name in ("tif_lo", "tif_hi"):
        v = getattr(p, name)
        if v is not None and not (0 <= v <= 1):
            raise TifkitError(f"{name}={v} is outside [0, 1]; give TIF edges as percentiles (fractions).")
    if p.tif_lo is not None and p.tif_hi is not None and p.tif_lo >= p.tif_hi:
        raise TifkitError(f"tif_lo={p.tif_lo} must be below tif_hi={p.tif_hi}.")


# ---------------------------------------------------------------------------------------------
# rules


def _single_band(raw: np.ndarray, sign: int, k: int, p: SelectParams, edges=None):
    """Keep the ordinal band of `k` positions centred at band_center (or between explicit edges)."""
    n = len(raw)
    pos = _positions(sign * raw)
    if edges is None:
        start = _band_start(n, k, p.band_center)
        end = start + k
    else:
        start, end = int(round(edges[0] * n)), int(round(edges[1] * n))
    return (pos >= start) & (pos < end), _band_info(raw, pos, start, end)


def _tif_edges(p: SelectParams) -> tuple[float, float] | None:
    """Explicit TIF edges from tif_lo/tif_hi (None: centred band of width keep)."""
    lo, hi = p.tif_lo, p.tif_hi
    if lo is None and hi is None:
        return None
    if lo is None:
        lo = max(hi - p.keep, 0.0)
    if hi is None:
        hi = min(lo + p.keep, 1.0)
    return lo, hi


def lossdiff_irm_mask(
    lossdiff: np.ndarray, irm: np.ndarray, k: int, center: float = 0.5
) -> tuple[np.ndarray, dict]:
    """Keep `k` rows whose LossDiff and IRM both lie in bands of the same width centred at `center`.

    Bisection finds the smallest band width m (in ordinal positions) whose intersection holds at
    least k rows. Widening by one position adds at most one row to each band, so the intersection
    can overshoot by one; the extra row is the one farthest (in rank) from the band centre, ties by
    row order, and it is dropped. Returns the mask and {m, start, trimmed}.
    """
    n = len(lossdiff)
    pos_a, pos_b = _positions(lossdiff), _positions(irm)

    def inside(m: int) -> np.ndarray:
        s = _band_start(n, m, center)
        return (pos_a >= s) & (pos_a < s + m) & (pos_b >= s) & (pos_b < s + m)

    lo, hi = 0, n  # invariant: |inside(lo)| < k <= |inside(hi)| (for k >= 1)
    if k == 0:
        hi = 0
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if inside(mid).sum() >= k:
            hi = mid
        else:
            lo = mid
    mask = inside(hi)
    extra = int(mask.sum()) - k
    if extra > 0:
        mid_pos = center * n - 0.5
        far = np.maximum(np.abs(pos_a - mid_pos), np.abs(pos_b - mid_pos))
        cand = np.flatnonzero(mask)
        drop = cand[np.lexsort((cand, far[cand]))[::-1][:extra]]  # farthest first; ties: later row
        mask[drop] = False
    return mask, {"m": hi, "start": _band_start(n, hi, center), "trimmed": max(extra, 0)}


def select(table: pd.DataFrame, params: SelectParams | None = None, **overrides) -> SelectionResult:
    """Apply `params.rule` to the score table and return the kept-row mask with its band edges.

    Keyword overrides replace fields of `params`, e.g. `select(table, rule="tif", keep=0.5)`. The
    rule is looked up in the registry (tifkit.rules; aliases such as "LossDiff-IRM" work)."""
    p = params or SelectParams()
    if overrides:
        p = replace(p, **overrides)
    spec = get_rule(p.rule)
    if p.rule != spec.name:
        p = replace(p, rule=spec.name)
    _check_params(p)
    n = len(table)
    k = int(round(p.keep * n))
    out = spec.select(table, p, k)
    picked = out if isinstance(out, Picked) else Picked(out)
    mask = np.asarray(picked.mask, dtype=bool)
    if mask.shape != (n,):
        raise TifkitError(f"Rule '{spec.name}' returned a mask of shape {mask.shape} for a table of {n} rows; its "
                          "selection function must return one boolean per row.")
    keep = picked.keep if picked.keep is not None else (p.keep if spec.uses_budget else 1.0)
    return SelectionResult(mask, spec.name, keep, int(mask.sum()), dict(picked.bands), dict(picked.details))


# ---------------------------------------------------------------------------------------------
# the built-in rules: selection functions (table, params, k) -> Picked, registered below


def _full(table: pd.DataFrame, p: SelectParams, k: int) -> Picked:
    return Picked(np.ones(len(table), dtype=bool))


def _random(table: pd.DataFrame, p: SelectParams, k: int) -> Picked:
    n = len(table)
    mask = np.zeros(n, dtype=bool)
    mask[np.random.default_rng(p.seed).choice(n, size=k, replace=False)] = True
    return Picked(mask, {}, {"seed": p.seed})


def _top_if(table: pd.DataFrame, p: SelectParams, k: int) -> Picked:
    col = p.column or "if"
    mask = _top(p.if_sign * _column(table, col, "top-if"), k, p.top_if_largest)
    return Picked(mask, {}, {"column": col, "largest": p.top_if_largest})


def _band_rule(rule: str, default_column: str, sign_field: str):
    """The selection function of a single-score band rule (tif, lossdiff, irm)."""

    def band(table: pd.DataFrame, p: SelectParams, k: int) -> Picked:
        col = p.column or default_column
        edges = _tif_edges(p) if rule == "tif" else None
        mask, info = _single_band(_column(table, col, rule), getattr(p, sign_field), k, p, edges)
        details = {"column": col, "band_center": p.band_center, "explicit_edges": edges is not None}
        return Picked(mask, {col: info}, details, edges[1] - edges[0] if edges else None)

    band.__name__ = band.__qualname__ = f"_{rule}_band"
    return band


def _lossdiff_irm(table: pd.DataFrame, p: SelectParams, k: int) -> Picked:
    rule, n = "lossdiff-irm", len(table)
    if p.column is not None:
        raise TifkitError("select.column applies to single-score rules only; unset it for 'lossdiff-irm'.")
    ld, irm = _column(table, "lossdiff", rule), _column(table, "irm", rule)
    mask, info = lossdiff_irm_mask(p.lossdiff_sign * ld, p.irm_sign * irm, k, p.band_center)
    start, end = info["start"], info["start"] + info["m"]
    bands = {"lossdiff": _band_info(ld, _positions(p.lossdiff_sign * ld), start, end),
             "irm": _band_info(irm, _positions(p.irm_sign * irm), start, end)}
    details = {"width": info["m"] / n if n else 0.0, "band_center": p.band_center, "trimmed": info["trimmed"]}
    return Picked(mask, bands, details)


def _rm_margin(table: pd.DataFrame, p: SelectParams, k: int) -> Picked:
    col = p.column or "rm_margin"
    return Picked(_top(_column(table, col, "rm-margin"), k, largest=True), {}, {"column": col})


def _annotation_gap(table: pd.DataFrame, p: SelectParams, k: int) -> Picked:
    gap = _column(table, "score_chosen", "annotation-gap") - _column(table, "score_rejected", "annotation-gap")
    return Picked(_top(gap, k, largest=True), {}, {"column": "score_chosen - score_rejected"})


def _oracle(table: pd.DataFrame, p: SelectParams, k: int) -> Picked:
    # The one rule that reads ground truth, on purpose: the world's mislabelled pairs are dropped, an
    # upper reference for the batch. It takes the pair table (tifkit.pipeline.selection_mask passes it).
    if "gt_flipped" not in table:
        raise TifkitError("The 'oracle' rule needs the world's ground truth (gt_flipped); use data.source: world.")
    return Picked(~table["gt_flipped"].to_numpy(dtype=bool))


# Registration order is the benchmark's order (experiments.bench_rules()); overlap_rank orders the score
# report's "overlap with TIF" rows; headline=True: the rules of the paper's main table (its methods and
# the oracle control), which the family grid runs. Colours: one hue per rule (irm brown, annotation-gap teal).
# replace=True: reloading this module (e.g. IPython's autoreload) redefines them in place.
_builtin = partial(register_rule, replace=True)
_builtin("full", _full, label="full data", colour="#4c72b0", uses_budget=False, headline=True, description="every pair")
_builtin("oracle", _oracle, label="oracle (drops mislabelled pairs)", colour="#55a868", uses_budget=False,
              ground_truth=True, headline=True, description="the pairs the world did not mislabel (ground truth)")
_builtin("random", _random, label="random", colour="#c44e52", overlap_rank=6,
              headline=True, description="a seeded random subset")
_builtin("top-if", _top_if, label="top-IF (classical)", colour="#64b5cd", needs=("if",), aliases=("top-IF",),
              overlap_rank=3, headline=True, description="the largest IF (classical selection)")
_builtin("tif", _band_rule("tif", "if", "if_sign"), label="TIF (exact IF, middle band)", colour="#ccb974",
              needs=("if",), aliases=("TIF",), headline=True, description="a middle percentile band of IF")
_builtin("lossdiff", _band_rule("lossdiff", "lossdiff", "lossdiff_sign"), label="LossDiff band",
              colour="#dd8452", needs=("lossdiff",), aliases=("LossDiff",), overlap_rank=1,
              headline=True, description="a middle percentile band of LossDiff")
_builtin("irm", _band_rule("irm", "irm", "irm_sign"), label="IRM band", colour="#937860", needs=("irm",),
              aliases=("IRM",), overlap_rank=2, headline=True, description="a middle percentile band of IRM")
_builtin("lossdiff-irm", _lossdiff_irm, label="LossDiff-IRM", colour="#8172b2", needs=("lossdiff", "irm"),
              aliases=("LossDiff-IRM",), overlap_rank=0,
              headline=True, description="the intersection of a LossDiff band and an IRM band of equal width")
_builtin("rm-margin", _rm_margin, label="reward-model margin", colour="#da8bc3", needs=("rm_margin",),
              overlap_rank=4, description="the largest reward-model margin")
_builtin("annotation-gap", _annotation_gap, label="annotation-score gap (\"GPT-4 filter\")",
              colour="#00777a", needs=("score_chosen", "score_rejected"), overlap_rank=5,
              description="the largest annotated score gap")


# ---------------------------------------------------------------------------------------------
# comparing selections and scores


def _as_mask(x) -> np.ndarray:
    return np.asarray(x.mask if isinstance(x, SelectionResult) else x, dtype=bool)


def overlap_coefficient(a, b) -> float:
    """|A n B| / min(|A|, |B|) of two masks (or SelectionResults) over the same rows; NaN if one is empty."""
    a, b = _as_mask(a), _as_mask(b)
    if a.shape != b.shape:
        raise TifkitError(f"Masks of different lengths ({len(a)} and {len(b)}) cannot be compared; select on the same table.")
    smaller = min(a.sum(), b.sum())
    return float((a & b).sum() / smaller) if smaller else float("nan")


def overlap_matrix(results: dict) -> pd.DataFrame:
    """Pairwise overlap coefficients of named masks (or SelectionResults), as a square DataFrame."""
    names = list(results)
    return pd.DataFrame(
        [[overlap_coefficient(results[r], results[c]) for c in names] for r in names], index=names, columns=names
    )


def correlations(x, y) -> dict[str, float]:
    """Pearson and Spearman correlation of two score vectors (scipy.stats)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape:
        raise TifkitError(f"Score vectors of different lengths ({len(x)} and {len(y)}) cannot be correlated.")
    return {"pearson": float(stats.pearsonr(x, y)[0]), "spearman": float(stats.spearmanr(x, y)[0])}


def report(result: SelectionResult, others: dict | None = None) -> str:
    """A few readable lines: kept count, band edges and overlap with other selections."""
    n = len(result.mask)
    pct = 100 * result.n_kept / n if n else 0.0
    lines = [f"rule {result.rule}: kept {result.n_kept} of {n} pairs ({pct:.1f}%, requested {100 * result.keep:.1f}%)"]
    for col, b in result.bands.items():
        lines.append(
            f"  {col} band: percentiles [{b['lo']:.3f}, {b['hi']:.3f}), values [{b['lo_value']:.4g}, {b['hi_value']:.4g}]"
        )
    for name, other in (others or {}).items():
        lines.append(f"  overlap with {name}: {overlap_coefficient(result, other):.3f}")
    return "\n".join(lines)


# The select fields the `tif` rule reads (its band, its sign and the column it ranks): what a table's
# `tif` column depends on, so what a cached table's name must carry (tifkit.pipeline.score_stage).
TIF_FIELDS = ("keep", "band_center", "tif_lo", "tif_hi", "if_sign", "column")


def tif_settings(params: SelectParams) -> dict:
    """The values of `TIF_FIELDS` in `params`: the settings a `tif` column is made under. `column` is left
    out while unset, so that tables named before it was keyed keep their names."""
    out = {k: getattr(params, k) for k in TIF_FIELDS}
    if out["column"] is None:
        del out["column"]
    return out


def tif_flags(table: pd.DataFrame, params: SelectParams | None = None) -> np.ndarray:
    """The `tif` column of a score table: exactly the pairs the `tif` rule keeps under `params`
    (the fields `TIF_FIELDS` names: keep, band_center, tif_lo/tif_hi, if_sign, column). The column and the rule share this one
    definition, so a table's `tif` flags never disagree with what `select.rule: tif` keeps."""
    return select(table, replace(params or SelectParams(), rule="tif")).mask


def with_tif(table: pd.DataFrame, params: SelectParams) -> pd.DataFrame:
    """The score table with its `tif` column (`tif_flags` under the run's select section) right after
    `if`; a `tif` column already there (an old cache made with other parameters) is replaced. Tables
    without `if` (influence "none") are returned unchanged. The one place a `tif` column is made:
    score caches keep none, since the band depends on the select section, not on the scores."""
    if "if" not in table.columns:
        return table
    table = table.drop(columns="tif") if "tif" in table.columns else table.copy()
    table.insert(table.columns.get_loc("if") + 1, "tif", np.asarray(tif_flags(table, params), dtype=bool))
    return table
