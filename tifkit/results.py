"""Numbers that carry their provenance, and the README/docs tables regenerated from them.

The batch (tifkit.batch) writes, beside its result files under ``figures/``, a manifest
``<name>_provenance.json``: the git commit, whether tifkit's sources differed from it, a hash of the
tifkit sources (`source_hash`), the parameters, and the sha256 of every file it wrote. The CSVs also
carry the commit and source hash in columns, the PNGs in text chunks.

``python -m tifkit.results`` rewrites the blocks between ``<!-- results:<block>:start -->`` and
``<!-- results:<block>:end -->`` in README.md and docs/*.md from those files (``--check`` only reports
blocks that would change, exit status 1). tests/test_batch.py fails when a committed result file's
source hash no longer matches the code, unless figures/STALE.md names the file and says why.

A manifest's `source_hash` covers the module that made it (its ``source_roots``: ``tifkit.batch``,
``tifkit.family_grid``) and every tifkit module that one imports, read from the code
(`tifkit.io.module_closure`; this module among them: it decides which rule pairs the committed
``*_comparisons.csv`` holds), with docstrings, comment lines and blank lines removed: editing prose,
or code the run never imports (the notebooks' layer, the CLI, the experiments), does not force a
rerun; changing code it runs does. A manifest without ``source_roots`` is judged by every tifkit file.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from tifkit import TifkitError
from tifkit.io import atomic_path, atomic_write_text, content_hash, file_sha256, source_files, source_hash  # noqa: F401 (re-exported)
from tifkit.rules import BASELINES, all_rules, label as rule_label
from tifkit.stats import paired_t_power, rule_comparisons, seeds_needed

PACKAGE = Path(__file__).resolve().parent
REPO = PACKAGE.parent
STALE_NOTE = "STALE.md"


# ------------------------------------------------------------------------------------ provenance
def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_commit() -> dict:
    """{"commit": HEAD or "unknown", "sources_modified": tifkit/ differs from HEAD (None if unknown)}."""
    head = _git("rev-parse", "HEAD")
    if head is None:
        return {"commit": "unknown", "sources_modified": None}
    status = _git("status", "--porcelain", "--", "tifkit")
    return {"commit": head, "sources_modified": bool(status) if status is not None else None}


def provenance(params, roots=None) -> dict:
    """What every result file of a batch records: commit, source hash, parameters and versions. With
    `roots` (e.g. ["tifkit.batch"]) the source hash covers the modules a run of those imports
    (`source_roots`, recorded too), so that editing code the run never imports (the notebooks' layer,
    the CLI) leaves its results current; without, every tifkit/**/*.py."""
    import platform

    import torch

    d = params.to_dict()
    roots = list(roots) if roots else None
    return {**git_commit(), "source_hash": source_hash(roots=roots), "source_roots": roots,
            "params_file": params.source,
            "params_hash": content_hash(d), "params": d,
            "versions": {"python": platform.python_version(), "torch": torch.__version__,
                         "numpy": np.__version__, "pandas": pd.__version__},
            "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}


def stamp_frame(df: pd.DataFrame, prov: dict) -> pd.DataFrame:
    """The table with the commit, source hash and parameter hash in three trailing columns."""
    return df.assign(commit=prov["commit"][:12], source_hash=prov["source_hash"], params_hash=prov["params_hash"])


def stamp_png(path: str | Path, prov: dict) -> Path:
    """Rewrite a PNG with tEXt chunks tifkit:commit, tifkit:source_hash, tifkit:params_hash (pixels kept)."""
    from PIL import Image, PngImagePlugin

    path = Path(path)
    with Image.open(path) as im:
        im.load()
        info = PngImagePlugin.PngInfo()
        for k, v in im.text.items() if hasattr(im, "text") else []:
            info.add_text(k, v)
        for k in ("commit", "source_hash", "params_hash"):
            info.add_text(f"tifkit:{k}", str(prov[k]))
        with atomic_path(path) as tmp:
            im.save(tmp, format="PNG", pnginfo=info)
    return path


def write_manifest(path: str | Path, prov: dict, files: list[Path], info: dict | None = None) -> Path:
    """``<name>_provenance.json``: `prov`, `info`, and the sha256 of each of `files` (by name, same folder)."""
    path = Path(path)
    rec = {**prov, **(info or {}),
           "files": {Path(f).name: file_sha256(f) for f in files}}
    atomic_write_text(path, json.dumps(rec, indent=1, default=str) + "\n")
    return path


def load_manifests(folder: str | Path = REPO / "figures") -> dict[str, dict]:
    """{manifest file name: its record} for every ``*_provenance.json`` in `folder`."""
    return {p.name: json.loads(p.read_text()) for p in sorted(Path(folder).glob("*_provenance.json"))}


def stale_notes(folder: str | Path = REPO / "figures") -> dict[str, str]:
    """{file name: reason} from `folder`/STALE.md lines of the form ``- `name`: reason``."""
    path = Path(folder) / STALE_NOTE
    if not path.exists():
        return {}
    notes = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^\s*[-*]\s*`([^`]+)`\s*[:\-\u2014]\s*(.+)$", line)
        if m:
            notes[m.group(1)] = m.group(2).strip()
    return notes


def check_provenance(folder: str | Path = REPO / "figures", current: str | None = None) -> list[str]:
    """Problems with the committed result files in `folder`, one sentence each (empty: all current).

    - a file a manifest lists is missing or its sha256 differs (edited after the batch wrote it);
    - a manifest's source hash differs from the code's (over the modules its `source_roots` import, or
      every source file), or the sources changed while its batch ran, and STALE.md does not name it;
    - STALE.md names a manifest that is current (remove the note);
    - a batch summary (``<name>_summary.csv``, name not starting with a digit) has no manifest and
      STALE.md does not name it."""
    folder = Path(folder)
    notes = stale_notes(folder)
    problems = []
    covered = set()
    for name, rec in load_manifests(folder).items():
        covered.update(rec.get("files", {}))
        for f, digest in rec.get("files", {}).items():
            p = folder / f
            if not p.exists():
                problems.append(f"{f} (listed in {name}) is missing; rerun the batch that wrote it.")
            elif file_sha256(p) != digest:
                problems.append(f"{f} differs from what the batch wrote ({name}); rerun the batch instead of editing it.")
        try:
            now = current or source_hash(roots=rec.get("source_roots"))  # older manifests: every source file
        except ValueError as e:  # a recorded root module is gone
            now = f"unknown ({e})"
        stale = rec.get("source_hash") != now or bool(rec.get("sources_changed_during_run"))
        if stale and name not in notes:
            rerun = rec.get("rerun") or (f"python -m tifkit batch {rec.get('params_file') or 'params/<name>.yaml'}` "
                                         "and `python -m tifkit.results")
            problems.append(f"{name}: results made by tifkit sources {rec.get('source_hash')}, the code is now {now}; "
                            f"rerun `{rerun}`, or name {name} in {folder.name}/{STALE_NOTE} with the reason.")
        if not stale and name in notes:
            problems.append(f"{folder.name}/{STALE_NOTE} names {name}, but its source hash matches the code; remove the note.")
    for p in sorted(folder.glob("*_summary.csv")):
        if p.name[0].isdigit() or p.name in covered or p.name in notes:
            continue
        problems.append(f"{p.name} has no provenance record; rerun the batch that writes it, or name it in "
                        f"{folder.name}/{STALE_NOTE} with the reason.")
    return problems


# ---------------------------------------------------------------------------------------- tables
# Each rule's name in the tables is its label in the rule registry (tifkit.rules.label).

# (claim, rule a, rule b, the direction the paper expects: +1 a beats b, -1 a is worse than b)
CLAIMS = [
    ("(b) dropping the mislabelled pairs (oracle selection) beats full data", "oracle", "full", 1),
    ("TIF beats classical top-IF (claim 3)", "tif", "top-if", 1),
    ("LossDiff-IRM beats full data (claim 6)", "lossdiff-irm", "full", 1),
    ("LossDiff-IRM beats random selection at the same budget (claim 6)", "lossdiff-irm", "random", 1),
    ("LossDiff-IRM beats LossDiff alone", "lossdiff-irm", "lossdiff", 1),
    ("LossDiff-IRM beats IRM alone", "lossdiff-irm", "irm", 1),
    ("LossDiff-IRM beats the reward-model filter", "lossdiff-irm", "rm-margin", 1),
    ("TIF beats full data", "tif", "full", 1),
    ("random 64% differs from full data", "random", "full", 0),
    ("the annotation-score filter hurts (below full data)", "annotation-gap", "full", -1),
]


def _pts(est, lo, hi) -> str:
    if not np.isfinite(est):
        return ""
    return f"{100 * est:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"


def _wr(est, lo, hi) -> str:
    return f"{est:.3f} [{lo:.3f}, {hi:.3f}]"


def _seeds(js: str | float) -> str:
    if not isinstance(js, str) or not js:
        return ""
    return " / ".join(f"{100 * v:+.0f}" for v in json.loads(js).values())


def _values(js: str | float) -> list[float]:
    """The per-seed values of a ``*_per_seed`` JSON cell ({seed: value}), in seed order as stored."""
    if not isinstance(js, str) or not js:
        return []
    return [float(v) for v in json.loads(js).values()]


POWER, ALPHA = 0.8, 0.05  # the power lines: seeds for 80% power of a two-sided paired t-test at 5%


def power_cell(values, shift: float = 0.0) -> str:
    """A table cell: the seeds a comparison needs for 80% power at its observed effect and spread
    (tifkit.stats.seeds_needed over `values` - `shift`, one per seed) and whether the batch has them."""
    v = np.asarray(values, dtype=float) - shift
    n = int(np.isfinite(v).sum())
    need = seeds_needed(v, POWER, ALPHA)
    if need is None:
        return "no effect" if n >= 2 else "one seed"
    mark = "enough" if n >= need else "too few"
    return f"{need if need <= 10000 else '>10000'} (have {n}: {mark})"


def power_line(values, shift: float = 0.0, unit: float = 100.0, what: str = "points") -> str:
    """The sentence beside a comparison: the observed mean and seed-to-seed sd of `values` - `shift`
    (one per seed), the power the batch has at that effect, the seeds 80% power would need, and
    whether the batch has that many."""
    v = np.asarray(values, dtype=float) - shift
    v = v[np.isfinite(v)]
    n = len(v)
    if n < 2:
        return "power: one seed cannot show training noise, so there is no power estimate"
    mean, sd = float(v.mean()), float(v.std(ddof=1))
    need = seeds_needed(v, POWER, ALPHA)
    if need is None:
        return f"power: no observed effect over {n} seeds (mean {unit * mean:+.1f} {what})"
    have = paired_t_power(mean / sd, n, ALPHA) if sd > 0 else 1.0
    need_s = f"{need}" if need <= 10000 else "more than 10000"
    verdict = "the batch has enough" if n >= need else "the batch has too few"
    return (f"power: at the observed effect ({unit * mean:+.1f} {what}, seed-to-seed sd {unit * sd:.1f}) the "
            f"{n}-seed batch has {100 * have:.0f}% power; 80% needs {need_s} seeds ({verdict})")


def rules_table(summary: pd.DataFrame, keep: float | None = None) -> str:
    """The README's table of every rule: WinRate vs SFT, difference to full data (interval, per seed,
    better in k of n), difference to random selection."""
    s = summary.sort_values("winrate_vs_sft", ascending=False)
    n = int(s.n_seeds.max())
    head = ("| rule | kept | WinRate vs SFT | vs full data (points) | per seed vs full | better than full "
            "| seeds for 80% power vs full | vs random (points) | better than random | seeds for 80% power vs random "
            "|\n|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for _, r in s.iterrows():
        name = rule_label(r.rule)
        if r.rule == "random" and keep is not None:
            name = f"random {100 * keep:.0f}%"
        bold = r.rule == "lossdiff-irm"
        cells = [name, f"{r.n_kept_mean:.0f}", _wr(r.winrate_vs_sft, r.winrate_lo, r.winrate_hi)]
        for b in BASELINES:
            if r.rule == b or f"diff_vs_{b}" not in r or not np.isfinite(r.get(f"diff_vs_{b}", np.nan)):
                cells += ["", "", "", ""] if b == "full" else ["", "", ""]
                continue
            cells.append(_pts(r[f"diff_vs_{b}"], r[f"diff_vs_{b}_lo"], r[f"diff_vs_{b}_hi"]))
            if b == "full":
                cells.append(_seeds(r.get("diff_vs_full_per_seed", "")))
            cells.append(f"{int(r[f'diff_vs_{b}_better'])} of {n}" if f"diff_vs_{b}_better" in r else "")
            cells.append(power_cell(_values(r.get(f"diff_vs_{b}_per_seed", ""))))
        if bold:
            cells = [c if (not c or c.startswith("**")) else f"**{c}**" for c in cells]
        rows.append("| " + " | ".join(cells) + " |")
    return head + "\n" + "\n".join(rows)


def claim_lines(comparisons: pd.DataFrame) -> str:
    """One line per claim of `CLAIMS` whose two rules were run: the paired difference with its
    interval over seeds and prompts, per seed, better in k of n, and the verdict."""
    c = comparisons.set_index(["a", "b"])
    out = []
    for text, a, b, sign in CLAIMS:
        if (a, b) not in c.index:
            continue
        r = c.loc[(a, b)]
        n = int(r.n_seeds)
        nums = (f"{_pts(r['diff'], r.lo, r.hi)} points, {a} better in {int(r.better)} of {n} seeds "
                f"(per seed {_seeds(r.per_seed)})")
        at = f"at {n} seed{'s' * (n != 1)}"
        if n < 2:
            verdict = (f"**no verdict** {at}: one seed cannot show training noise, so it decides nothing")
        elif sign == 0:
            verdict = (f"**no difference shown** {at} (the interval covers zero)" if r.lo <= 0 <= r.hi
                       else f"**they differ** {at}")
        elif r.lo <= 0 <= r.hi:
            verdict = f"**not shown** {at}: the interval covers zero"
        elif (r.lo > 0) == (sign > 0):
            verdict = f"**holds** {at}"
        else:
            verdict = f"**reversed** {at}: the interval excludes zero on the other side"
        out.append(f"- {text}: {verdict}; {nums}; {power_line(_values(r.per_seed))}.")
    return "\n".join(out)


def comparisons(per_prompt: pd.DataFrame, n_bootstrap: int = 10000, seed: int = 0) -> pd.DataFrame:
    """Paired difference of every ordered pair of rules (a, b), a before b in run order, and the
    CLAIMS pairs in their order; hierarchical bootstrap intervals (tifkit.stats.rule_comparisons)."""
    return rule_comparisons(per_prompt, [(a, b) for _, a, b, _ in CLAIMS], n_bootstrap, seed)


def batch_difference(a: str, b: str, name: str = "tiny", folder: str | Path = REPO / "figures") -> dict | None:
    """Rule `a` minus rule `b` as a committed batch's `<name>_comparisons.csv` stores it (`comparisons`
    keeps every claim's pair in the claim's order), with both rules' WinRates from `<name>_summary.csv`;
    None when either file is absent. What notebooks 01 and 04 print beside their own verdicts."""
    comp_path, summ_path = Path(folder) / f"{name}_comparisons.csv", Path(folder) / f"{name}_summary.csv"
    if not comp_path.exists() or not summ_path.exists():
        return None
    comp = pd.read_csv(comp_path).set_index(["a", "b"])
    if (a, b) not in comp.index:
        raise TifkitError(f"{comp_path} holds no comparison {a} - {b} (its pairs are in each claim's order).")
    r = comp.loc[(a, b)]
    wr = pd.read_csv(summ_path).set_index("rule").winrate_vs_sft
    return {"a": a, "b": b, "diff": r["diff"], "lo": r.lo, "hi": r.hi, "n_seeds": int(r.n_seeds),
            "n_better": int(r.better), "mean_a": wr[a], "mean_b": wr[b], "file": comp_path.name}


def ab_lines(summary: pd.DataFrame) -> str:
    """The README's (a) and (b): full-data DPO against SFT, oracle selection against full data."""
    s = summary.set_index("rule")
    out = []
    if "full" in s.index:
        f = s.loc["full"]
        n = int(f.n_seeds)
        per = json.loads(f.winrate_per_seed) if isinstance(f.get("winrate_per_seed"), str) else {}
        above = sum(v > 0.5 for v in per.values())
        verdict = "holds" if f.winrate_lo > 0.5 else ("not shown: the interval covers 0.5" if f.winrate_hi >= 0.5
                                                       else "reversed")
        out.append(f"- **(a) DPO on the full data beats SFT** ({verdict}): WinRate **{_wr(f.winrate_vs_sft, f.winrate_lo, f.winrate_hi)}**, "
                   f"above 0.5 in {above} of {n} seeds (per seed {' / '.join(f'{v:.2f}' for v in per.values())}); "
                   f"mean oracle reward {f.reward_sft:.3f} -> {f.reward:.3f}; "
                   f"{power_line(list(per.values()), shift=0.5, what='WinRate points above 0.5')}.")
    if "oracle" in s.index and "diff_vs_full" in s:
        o = s.loc["oracle"]
        verdict = "holds" if o.diff_vs_full_lo > 0 else ("not shown: the interval covers zero" if o.diff_vs_full_hi >= 0
                                                         else "reversed")
        out.append(f"- **(b) Dropping the mislabelled pairs (oracle selection) beats full data** ({verdict}) by "
                   f"**{_pts(o.diff_vs_full, o.diff_vs_full_lo, o.diff_vs_full_hi)} WinRate points** (paired, same prompts "
                   f"and seeds), better in {int(o.diff_vs_full_better)} of {int(o.n_seeds)} seeds (per seed "
                   f"{_seeds(o.diff_vs_full_per_seed)}); reward {o.reward:.3f}, {o.n_kept_mean:.0f} pairs kept on average; "
                   f"{power_line(_values(o.diff_vs_full_per_seed))}.")
    return "\n".join(out)


def families_table(folder: Path, names: list[str]) -> str:
    """(a) and (b) per tiny family, from each family's batch summary."""
    notes = stale_notes(folder)
    head = ("| family | seeds | SFT reward | full-data DPO: WinRate vs SFT | seeds for 80% power (vs 0.5) "
            "| oracle selection minus full (points) | oracle better than full | seeds for 80% power (oracle vs full) "
            "|\n|---|---|---|---|---|---|---|---|")
    rows = []
    for name in names:
        p = folder / f"{name}_summary.csv"
        if not p.exists():
            continue
        s = pd.read_csv(p).set_index("rule")
        if "full" not in s.index:
            continue
        f = s.loc["full"]
        fam = {"tiny": "llama (default)", "tiny-qwen": "qwen (Qwen3-style)", "tiny-pythia": "pythia (GPT-NeoX)",
               "tiny-gpt2": "gpt2"}.get(name, name)
        if p.name in notes or f"{name}_provenance.json" in notes:
            fam += " (stale: see figures/STALE.md)"
        o = s.loc["oracle"] if "oracle" in s.index else None
        better = (f"{int(o.diff_vs_full_better)} of {int(o.n_seeds)}" if o is not None and "diff_vs_full_better" in s
                  else "not recorded")
        pow_o = power_cell(_values(o.diff_vs_full_per_seed)) if o is not None and "diff_vs_full_per_seed" in s else ""
        rows.append(f"| {fam} | {int(f.n_seeds)} | {f.reward_sft:.3f} | {_wr(f.winrate_vs_sft, f.winrate_lo, f.winrate_hi)} | "
                    f"{power_cell(_values(f.get('winrate_per_seed', '')), shift=0.5)} | "
                    f"{_pts(o.diff_vs_full, o.diff_vs_full_lo, o.diff_vs_full_hi) if o is not None else ''} | {better} | "
                    f"{pow_o} |")
    return head + "\n" + "\n".join(rows)


GRID_FAMILIES = {"llama": "llama", "qwen": "qwen (Qwen3-style)", "pythia": "pythia (GPT-NeoX)", "gpt2": "gpt2"}
GRID_OBJECTIVES = {"dpo": "DPO", "slic": "SLiC"}


def load_grid(folder: str | Path = REPO / "figures") -> dict:
    """The family grid's committed results: {(family, objective): (summary indexed by rule, manifest
    dict, stale flag)} from ``grid-<family>-<objective>_summary.csv`` and their manifests under
    `folder` (stale: figures/STALE.md names the file). Empty when the grid has not run."""
    folder = Path(folder)
    notes = stale_notes(folder) if folder.is_dir() else {}
    found = {}
    for p in sorted(folder.glob("grid-*_summary.csv")):
        man = folder / p.name.replace("_summary.csv", "_provenance.json")
        rec = json.loads(man.read_text()) if man.exists() else {}
        fam, obj = rec.get("family"), rec.get("objective")
        if not fam or not obj:
            fam, _, obj = p.name[len("grid-"):-len("_summary.csv")].rpartition("-")
        found[fam, obj] = (pd.read_csv(p).set_index("rule"), rec, man.name in notes or p.name in notes)
    return found


def grid_frame(folder: str | Path = REPO / "figures") -> pd.DataFrame:
    """`load_grid` as one long table: a row per (family, objective, rule) with the summary's columns
    and `seeds` (how many the variant ran), `stale`; families and objectives in the README's order."""
    found = load_grid(folder)
    if not found:
        return pd.DataFrame(columns=["family", "objective", "rule", "n_seeds", "stale"])
    frames = [s.reset_index().assign(family=f, objective=o, stale=st) for (f, o), (s, _, st) in found.items()]
    df = pd.concat(frames, ignore_index=True)
    fam_order = list(GRID_FAMILIES) + sorted(set(df.family) - set(GRID_FAMILIES))
    rule_order = [r.name for r in all_rules()] + sorted(set(df.rule) - {r.name for r in all_rules()})
    df["_f"] = df.family.map(fam_order.index)
    df["_r"] = df.rule.map(rule_order.index)
    return df.sort_values(["objective", "_f", "_r"]).drop(columns=["_f", "_r"]).reset_index(drop=True)


def grid_table(folder: str | Path = REPO / "figures") -> str:
    """The family grid (tifkit.family_grid) as the paper's main table: per objective, one row per rule
    and one column per family; each cell the WinRate vs SFT with its hierarchical interval, then the
    paired difference to full data (points, interval), better than full in k of n seeds and the
    seeds 80% power would need at the observed effect. From ``grid-<family>-<objective>_summary.csv``
    and their manifests; says so when there are none."""
    found = load_grid(folder)
    if not found:
        return ("No family-grid results yet: run `make families` (every tiny family x DPO and SLiC x the headline "
                "rules over the batch's seeds), then `python -m tifkit.results` fills this table.")
    fams = [f for f in GRID_FAMILIES if any(k[0] == f for k in found)] + sorted(
        {f for f, _ in found} - set(GRID_FAMILIES))
    objs = [o for o in GRID_OBJECTIVES if any(k[1] == o for k in found)] + sorted({o for _, o in found} - set(GRID_OBJECTIVES))
    order = [r.name for r in all_rules()]
    out = []
    for obj in objs:
        present = {r for (f, o), (s, _, _) in found.items() if o == obj for r in s.index}
        rules = [r for r in order if r in present] + sorted(present - set(order))
        cols = [f for f in fams if (f, obj) in found]
        head = [GRID_FAMILIES.get(f, f) + (" (stale)" if found[f, obj][2] else "") for f in cols]
        out.append(f"**{GRID_OBJECTIVES.get(obj, obj)}**\n")
        out.append("| rule | " + " | ".join(head) + " |\n|---|" + "---|" * len(cols))
        for rule in rules:
            cells = []
            for f in cols:
                s = found[f, obj][0]
                if rule not in s.index:
                    cells.append("")
                    continue
                r = s.loc[rule]
                cell = _wr(r.winrate_vs_sft, r.winrate_lo, r.winrate_hi)
                if rule != "full" and np.isfinite(r.get("diff_vs_full", np.nan)):
                    cell += (f"<br>{_pts(r.diff_vs_full, r.diff_vs_full_lo, r.diff_vs_full_hi)}, "
                             f"{int(r.diff_vs_full_better)} of {int(r.n_seeds)}; "
                             f"80%: {power_cell(_values(r.get('diff_vs_full_per_seed', '')))}")
                cells.append(cell)
            out.append(f"| {rule_label(rule)} | " + " | ".join(cells) + " |")
        out.append("")
    recs = [rec for _, rec, _ in found.values()]
    seeds = sorted({tuple(rec.get("seeds") or ()) for rec in recs})
    hashes = sorted({str(rec.get("source_hash", "?")) for rec in recs})
    out.append(f"<sub>Each cell: WinRate vs SFT [95% interval over seeds and prompts]; below it, minus full data in "
               f"WinRate points [interval], better than full in k of n seeds, and the seeds a paired t-test over "
               f"seeds needs for 80% power at the observed effect and spread. From `figures/grid-*_summary.csv` "
               f"(tifkit sources {', '.join(hashes)}; seeds "
               f"{' | '.join(', '.join(map(str, s)) for s in seeds) or '?'}); regenerate with `make families` and "
               "`python -m tifkit.results`."
               + (" **Stale** columns: the code has changed since their run, see `figures/STALE.md`."
                  if any(st for _, _, st in found.values()) else "") + "</sub>")
    return "\n".join(out)


def diagnostics_table(diag: pd.DataFrame) -> str:
    """docs/SCORES.md: every score diagnostic, mean (std) over seeds, per seed, the paper's value."""
    seeds = [c for c in diag.columns if re.fullmatch(r"seed\d+", c)]
    head = (f"| statistic | ours: mean (std) over {len(seeds)} seeds | per seed | paper |\n|---|---|---|---|")
    what = {"auroc": "AUROC for mislabelled pairs of", "correlation": "", "overlap": "overlap with TIF:"}
    rows = []
    for _, r in diag.iterrows():
        if r.section == "correlation":
            label = f"{r.statistic.split()[0].capitalize()} of {r['name']} with IF"
        else:
            label = f"{what.get(r.section, r.section)} {r['name']}".strip()
        per = ", ".join(f"{r[c]:.3f}" for c in seeds if pd.notna(r[c]))
        paper = "" if pd.isna(r.paper) else str(r.paper)
        rows.append(f"| {label} | {r['mean']:.3f} ({r['std']:.3f}) | {per} | {paper} |")
    return head + "\n" + "\n".join(rows)


# ------------------------------------------------------------- the seven claims at a glance (06)
# claim number -> (the claim, the notebook whose summary states it, the key of its sentence there)
GLANCE_CLAIMS = {
    1: ("data value depends on the model", "05", "claim1"),
    2: ("medium-IF group beats small and large", "01", "claim2"),
    3: ("TIF beats top-IF", "01", "claim3"),
    4: ("LossDiff and IRM correlate with IF, LossDiff more", "02", "claim4"),
    5: ("fusion overlaps TIF more than either proxy", "03", "claim5"),
    6: ("LossDiff-IRM beats full data and the filters", "04", "claim6"),
    7: ("LossDiff-IRM much cheaper than exact IF", "02", "claim7"),
}
# claim number -> the statistics of notebook 06 (experiments.DECISION_CLAIMS keys) read for it
GLANCE_DECISIONS = {3: ["c3_winrate"], 4: ["c4_lossdiff", "c4_irm", "c4_order"], 5: ["c5_fusion"], 6: ["c6_winrate"]}


def _verdict_clause(sentence: str) -> str:
    """The verdict of a conclusion sentence: its first clause, without the claim's name and brackets."""
    head = re.split(r"[:.](?:\s|$)", str(sentence), maxsplit=1)[0]
    head = re.sub(r"\s*\([^()]*\)", "", head)
    head = re.sub(r"\s+at this scale$", "", head)
    return re.sub(r"^(?:On this one seed, )?[Cc]laim \d+ ", "", head).strip()


def _iv(r: dict) -> str:
    lo, hi = r.get("lo"), r.get("hi")
    if lo is None or hi is None or not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{r['estimate']:+.2f}"
    return f"{r['estimate']:+.2f} [{lo:+.2f}, {hi:+.2f}]"


def decision_cell(summary06: dict, keys: list[str]) -> str:
    """"Holds under which decisions" for the statistics `keys` of notebook 06's summary: the verdict at
    the default with its interval; every setting whose verdict differs, with its own interval (holds and
    fails first, then a one-seed sweep's above and below, then unclear); how many keep the default's
    verdict; and the settings that cannot move the statistic (per-seed values equal to the default's,
    `moved` false in the summary), which the counts leave out."""
    stats = pd.DataFrame(summary06.get("statistics") or [])
    labels = {r["claim"]: r["label"] for r in summary06.get("robustness") or []}
    parts = []
    for k in keys:
        g = stats[stats.claim == k] if len(stats) else stats
        base = g[g.setting == "default"] if len(g) else g
        if base.empty:
            continue
        b = base.iloc[0].to_dict()
        other = g[g.setting != "default"]
        moved = other.moved.fillna(True).astype(bool) if "moved" in other else pd.Series(True, index=other.index)
        fixed, other = other[~moved], other[moved]
        text = f"{labels.get(k, k)}: {b['verdict']} at the default ({_iv(b)})"
        if other.empty and fixed.empty:
            parts.append(text + "; measured at the default only")
            continue
        differ = other[other.verdict != b["verdict"]]
        for v in ("holds", "fails", "above", "below", "unclear"):
            d = differ[differ.verdict == v]
            if len(d):
                text += f"; {v} under " + ", ".join(f"{r['setting']} ({_iv(r)})" for r in d.to_dict("records"))
        same = other[other.verdict == b["verdict"]]
        names = ", ".join(same.setting)
        text += (f"; {b['verdict']} under every other setting that moves it ({names})" if len(same) and not len(differ)
                 else f"; {b['verdict']} under the other {len(same)} ({names})" if len(same) else "")
        if len(fixed):
            text += f"; {', '.join(fixed.setting)} cannot move it (the same per-seed values as the default)"
        parts.append(text)
    return "<br>".join(parts) or "not measured"


def glance_table(folder: Path, name: str = "tiny") -> str:
    """The seven claims: the verdict of each notebook's full-scale conclusion on our world and, from
    `figures/06_<name>_summary.json`, how that verdict moves with the open decisions."""
    folder = Path(folder)

    def load(nn):
        f = folder / f"{nn}_{name}_summary.json"
        return json.loads(f.read_text()) if f.exists() else {}

    s06 = load("06")
    rows = ["| claim | on our world (notebook, seeds) | holds under which decisions (06) |", "|---|---|---|"]
    for num, (claim, nn, key) in GLANCE_CLAIMS.items():
        s = load(nn)
        world = (f"{_verdict_clause(s[key])} ({nn}, {len(s.get('seeds') or [])} seeds)" if key in s
                 else f"not run ({nn})")
        dec = decision_cell(s06, GLANCE_DECISIONS[num]) if num in GLANCE_DECISIONS and s06 else "not swept"
        rows.append(f"| {num}. {claim} | {world} | {dec} |")
    st06 = s06.get("statistics") or []
    n06 = len(s06.get("sweep_seeds") or []) or max((int(r.get("n_seeds") or 0) for r in st06), default=0)
    src = (f"\n\n<sub>From `figures/0*_{name}_summary.json` (the notebooks at full scale; 06: {n06} seeds, "
           f"{len({r['setting'] for r in st06})} settings, one decision changed at a time); regenerate with "
           "`python -m tifkit.results`.</sub>") if s06 else ""
    return "\n".join(rows) + src


# ------------------------------------------------------------------------------------ the blocks
def blocks(folder: str | Path = REPO / "figures", name: str = "tiny") -> dict[str, str]:
    """{block name: generated Markdown} from the batch's files in `folder`."""
    folder = Path(folder)
    out = {}
    summ = folder / f"{name}_summary.csv"
    man = folder / f"{name}_provenance.json"
    if summ.exists():
        s = pd.read_csv(summ)
        rec = json.loads(man.read_text()) if man.exists() else {}
        keep = (rec.get("params") or {}).get("select", {}).get("keep")
        seeds = rec.get("seeds")
        src = (f"\n\n<sub>From `figures/{summ.name}` (tifkit sources {rec.get('source_hash', '?')}, commit "
               f"{str(rec.get('commit', '?'))[:10]}, seeds {', '.join(map(str, seeds)) if seeds else '?'}); "
               "regenerate with `python -m tifkit.results`."
               + (" **Stale**: the code has changed since this run, see `figures/STALE.md`." if man.name in
                  stale_notes(folder) else "") + "</sub>")
        out[name] = rules_table(s, keep) + src
        out[f"{name}-ab"] = ab_lines(s)
        comp = folder / f"{name}_comparisons.csv"
        if comp.exists():
            out[f"{name}-claims"] = claim_lines(pd.read_csv(comp)) + src
        out[f"{name}-families"] = families_table(folder, [name] + [f"{name}-{f}" for f in ("qwen", "pythia", "gpt2")])
    if any((folder / f"{nn}_{name}_summary.json").exists() for nn in ("01", "02", "03", "04", "05", "06")):
        out[f"{name}-glance"] = glance_table(folder, name)
    diag = folder / f"{name}_score_diagnostics.csv"
    if diag.exists():
        out[f"{name}-scores"] = diagnostics_table(pd.read_csv(diag))
    return out


_BLOCK = re.compile(r"(?P<head><!-- results:(?P<name>[\w.-]+):start -->)\n(?P<body>.*?)\n?"
                    r"(?P<tail><!-- results:(?P=name):end -->)", re.S)


def render(text: str, generated: dict[str, str]) -> tuple[str, list[str]]:
    """`text` with every marked block whose name is in `generated` replaced; (new text, changed names)."""
    changed = []

    def sub(m):
        name = m.group("name")
        if name not in generated:
            return m.group(0)
        if m.group("body") != generated[name]:
            changed.append(name)
        return f"{m.group('head')}\n{generated[name]}\n{m.group('tail')}"

    return _BLOCK.sub(sub, text), changed


def documents(repo: str | Path = REPO) -> list[Path]:
    repo = Path(repo)
    return [p for p in [repo / "README.md", *sorted((repo / "docs").glob("*.md"))] if p.exists()]


def update(repo: str | Path = REPO, check: bool = False, names: list[str] | None = None) -> dict[str, list[str]]:
    """Regenerate the marked blocks of README.md and docs/*.md; {document: changed blocks}."""
    repo = Path(repo)
    generated = {}
    for n in names or ["tiny"]:
        generated.update(blocks(repo / "figures", n))
    generated["family-grid"] = grid_table(repo / "figures")
    changed = {}
    for doc in documents(repo):
        text = doc.read_text(encoding="utf-8")
        new, names_changed = render(text, generated)
        if names_changed:
            changed[str(doc.relative_to(repo))] = names_changed
            if not check:
                atomic_write_text(doc, new)
    return changed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tifkit.results", description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if a block is out of date")
    ap.add_argument("--name", action="append", help="batch name(s) (run.name), default tiny")
    args = ap.parse_args(argv)
    changed = update(check=args.check, names=args.name)
    for doc, names in changed.items():
        print(f"{doc}: {'out of date' if args.check else 'regenerated'}: {', '.join(names)}")
    problems = check_provenance()
    for p in problems:
        print(f"provenance: {p}", file=sys.stderr)
    if not changed:
        print("every results block is up to date")
    return 1 if (args.check and changed) else 0


if __name__ == "__main__":
    sys.exit(main())
