"""The data report: what scoring says about a user's own preference pairs, as a notebook and a page.

    tifkit report --data pairs.jsonl --model my-sft [-o OUT_DIR]

scores the pairs through the pipeline's cached route (the same as ``tifkit score --data --model``),
then runs the parameterized notebook ``notebooks/07_your_data.ipynb`` with papermill on the score
table and writes OUT_DIR/report.ipynb (executed) and OUT_DIR/report.html (nbconvert's HTML exporter,
figures embedded as data URIs). OUT_DIR defaults to ``<run.root>/reports/<run name>-s<seed>``; it
is a folder tifkit owns (``.tifkit-output`` marker) and is swapped in whole (io.replace_folder), so
that a folder of the user's is never replaced (data.check_output's rules).

`collect(params, seed)` gathers everything the notebook shows (the notebook calls it): the cleaning
report with row numbers, the score table, the time of the scoring run when this kit measured it,
the memory estimate of scoring the user's model at the data's lengths, and every rule's selection.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tifkit import TifkitError
from tifkit.config import load_params
from tifkit.data import check_output, load_pairs, preflight
from tifkit.influence import SCORING_DTYPES
from tifkit.io import atomic_write_text, publish_folder, recover_folder, sweep_temps, tmp_prefix
from tifkit.memory import estimate_scoring_memory
from tifkit.notebooks import NOTEBOOK_DIR, kernel_config
from tifkit.pipeline import context_length, prepare, score_key, score_stage, sft_stage
from tifkit.rules import get_rule, rule_names
from tifkit.select import select
from tifkit.shapes import lora_params
from tifkit.userfiles import absolute, out_path, own_params

NOTEBOOK = "07_your_data"
SCORE_COLUMNS = ("if", "lossdiff", "irm")  # the distributions the report draws
# the rule whose band each distribution shows (its own single-score band rule)
BAND_RULE = {"if": "tif", "lossdiff": "lossdiff", "irm": "irm"}


# ------------------------------------------------------------------------------------- scoring, timed
def timed_scores(ctx) -> tuple[Path, float | None]:
    """The run's score table (pipeline.score_stage) and the seconds its scoring run took: measured now
    when it was computed now, read from ``<table>.seconds.json`` when an earlier report measured it,
    None when it was computed by another command (its time was not recorded)."""

    scores = ctx.run_dir / "scores"
    before = set(scores.glob("scores-*.parquet")) | set(scores.glob(f"core-{score_key(ctx)}*.parquet"))
    t0 = time.perf_counter()
    path = Path(score_stage(ctx))
    sec = time.perf_counter() - t0
    side = path.with_name(path.name + ".seconds.json")
    if path not in before and not any(b.name.startswith("core-") for b in before):
        atomic_write_text(side, json.dumps({"seconds": round(sec, 2)}) + "\n")
        return path, sec
    try:
        return path, float(json.loads(side.read_text())["seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return path, None


# ---------------------------------------------------------------------------------------- the report
@dataclass
class DataReport:
    """Everything notebook 07 shows, computed from the params and the cached stages."""

    params: object  # tifkit.config.Params
    seed: int
    source: str  # where the pairs came from
    model: str  # the scored model (a path, a hub id, or the tiny family's SFT stage)
    clean: object  # tifkit.data.CleanReport of the pairs (row numbers of every dropped row)
    n_val: int  # clean pairs held out as D_val
    pairs: pd.DataFrame  # the scored pairs (prompt, chosen, rejected) in table order
    table: pd.DataFrame  # the score table (pair_id, irm, lossdiff, if, tif, ..., *_tokens)
    score_path: Path
    score_seconds: float | None
    seq_len: int  # the longest prompt + response in tokens (the memory estimate's length)
    memory: object  # tifkit.memory.MemoryEstimate at score.batch_size pairs of seq_len tokens
    model_dir: str  # the folder (or hub id) whose config the estimate reads
    batch_size: int
    results: dict = field(default_factory=dict)  # rule -> SelectionResult at select.keep

    @property
    def dropped(self) -> pd.DataFrame:
        """One row per dropped row of the file: row (0-based), line (1-based, for JSONL), pair_id, reason."""
        rows = [(i, i + 1, self.clean.ids.get(i, ""), reason)
                for reason, idx in self.clean.rows.items() for i in idx]
        return pd.DataFrame(sorted(rows), columns=["row", "line", "pair_id", "reason"])


def collect(p, seed: int | None = None) -> DataReport:
    """Prepare the run, score it (cached), and gather the report's contents (see DataReport)."""

    ctx = prepare(p, seed)
    p = ctx.p
    path, sec = timed_scores(ctx)
    table = pd.read_parquet(path)
    if p.data.source == "world":  # the world's pairs as cleaning saw them
        _, clean = load_pairs(dataclasses.replace(p.data, verbose=False), tokenizer=ctx.tokenizer, frame=ctx.world.train)
        source, model = "the built-in preference world", f"tiny {p.model.family} (SFT on the world)"
    else:  # the same cleaning as prepare: max_tokens defaults to the model's context
        n_ctx = context_length(p)
        dp = dataclasses.replace(p.data, verbose=False, max_tokens=p.data.max_tokens if p.data.max_tokens is not None else n_ctx)
        _, clean = load_pairs(dp, tokenizer=ctx.tokenizer, context=f"the context of model {p.model.name_or_path!r}")
        source, model = str(p.data.path), str(p.model.name_or_path)
    pairs = ctx.train.set_index("pair_id").loc[table["pair_id"]].reset_index()
    lens = table["prompt_tokens"] + np.maximum(table["chosen_tokens"], table["rejected_tokens"])
    seq_len = int(lens.max())
    results = {}
    for rule in rule_names(ground_truth=False):
        if not get_rule(rule).uses_budget:  # full data: nothing to report
            continue
        try:
            results[rule] = select(table, dataclasses.replace(p.select, rule=rule))
        except TifkitError:
            pass  # that rule's scores are not in the table (no reward model, no annotation scores)

    model_dir = str(sft_stage(ctx))
    memory = scoring_memory(p, seq_len, model_dir)
    return DataReport(params=p, seed=ctx.seed, source=source, model=model, clean=clean, n_val=len(ctx.val),
                      pairs=pairs, table=table, score_path=path, score_seconds=sec, seq_len=seq_len, memory=memory,
                      model_dir=model_dir,
                      batch_size=p.score.batch_size, results=results)


def scoring_memory(p, seq_len: int, model_dir: str, batch_size: int | None = None):
    """tifkit.memory's estimate of one scoring process for the model at `model_dir` (the run's SFT
    model) at `seq_len` tokens and `batch_size` pairs (default score.batch_size), from the model's
    config alone (no weights are loaded: a meta-device copy counts the parameters)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM


    cfg = AutoConfig.from_pretrained(str(model_dir), trust_remote_code=p.model.trust_remote_code)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg, trust_remote_code=p.model.trust_remote_code)
    n_params = sum(t.numel() for t in model.parameters())
    n_train = n_params
    if p.model.lora.enabled:

        n_train = lora_params(getattr(cfg, "text_config", None) or cfg, p.model.lora.r)
    dtype = SCORING_DTYPES.get(p.score.dtype) or (
        getattr(torch, p.model.dtype) if p.model.dtype in ("float32", "bfloat16", "float16") else
        next(model.parameters()).dtype)
    return estimate_scoring_memory(getattr(cfg, "text_config", None) or cfg, n_params, n_train, dtype,
                                   batch_size or p.score.batch_size, seq_len, n_models=3, influence=p.score.influence != "none")


def band_examples(table: pd.DataFrame, column: str, band: dict, n: int = 2) -> dict[str, pd.DataFrame]:
    """`n` rows of `table` from each of three bands of `column`'s ranks: below the selected band
    ("low"), inside it ("middle": `band`'s lo/hi fractions) and above it ("high"), the ones nearest
    each band's centre rank; pair_id order breaks ties."""
    pct = table[column].rank(method="first").to_numpy() / len(table)
    lo, hi = float(band["lo"]), float(band["hi"])
    out = {}
    for name, a, b in (("low", 0.0, lo), ("middle", lo, hi), ("high", hi, 1.0)):
        inside = np.flatnonzero((pct > a) & (pct <= b))
        order = inside[np.argsort(np.abs(pct[inside] - (a + b) / 2), kind="stable")][:n]
        out[name] = table.iloc[np.sort(order)]
    return out


# --------------------------------------------------------------------------------------- the command
def notebook_path() -> Path:

    path = NOTEBOOK_DIR / f"{NOTEBOOK}.ipynb"
    if not path.exists():
        raise TifkitError(f"The report notebook {path} is not here (it ships with the repository, not the wheel): "
                          "run tifkit report from a clone of the repository.")
    return path


def default_out(p, seed: int) -> Path:
    return Path(p.run.root) / "reports" / f"{p.run.name}-s{seed}"


def run_report(params_file: str, sets=(), data: str | None = None, model: str | None = None,
               seed: int | None = None, out: str | None = None, kernel: str = "python3",
               say=print) -> Path:
    """`tifkit report`: score (cached), run notebook 07 with papermill, write OUT_DIR/report.ipynb and
    OUT_DIR/report.html, swap OUT_DIR in; returns OUT_DIR. Nothing of the user's is overwritten."""
    try:
        import nbconvert  # noqa: F401
        import papermill as pm
    except ImportError as e:
        raise TifkitError(f"tifkit report needs the notebook tools ({e.name} is missing): "
                          "pip install 'tifkit[notebooks]' nbconvert.") from None

    p = own_params(load_params(params_file, list(sets)), data, model)
    seed = p.run.seed if seed is None else seed
    p = dataclasses.replace(p, run=dataclasses.replace(p.run, root=str(Path(p.run.root).expanduser().resolve())))
    dest = out_path(out) if out else default_out(p, seed)
    if dest.suffix.lower() in (".jsonl", ".json", ".parquet", ".html", ".ipynb"):
        raise TifkitError(f"-o {out}: the report is a folder (report.ipynb and report.html); give a folder name "
                          "without an extension.")
    check_output(dest, (p.data.path,))
    src = notebook_path()
    preflight(p.data)

    ctx = prepare(p, seed)  # one sentence for bad data or a bad model, before any kernel starts
    path, sec = timed_scores(ctx)
    say(f"[tifkit] score table {path}" + (f" (scoring run {sec:.0f} s)" if sec is not None else " (cached)"))

    dest = dest.resolve()
    recover_folder(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    sweep_temps(dest.parent, recursive=False)
    tmp = Path(tempfile.mkdtemp(prefix=tmp_prefix(dest.name), dir=dest.parent))
    try:
        nb_out = tmp / "report.ipynb"
        sets = [s for s in sets if s.split("=", 1)[0].strip() != "run.root"]  # run_root carries it, resolved
        params = {"scale": "default", "params_file": str(absolute(params_file)), "overrides": sets,
                  "seeds": [seed], "run_root": p.run.root, "figures_dir": str(tmp / "figures"),
                  "data": p.data.path if p.data.source != "world" else None,
                  "model": p.model.name_or_path}
        say(f"[tifkit] running the report notebook {src.name} ...")
        try:
            pm.execute_notebook(str(src), str(nb_out), parameters=params, kernel_name=kernel, cwd=os.getcwd(),
                                progress_bar=False, log_output=False, config=kernel_config())
        except pm.PapermillExecutionError as e:
            failed = Path(p.run.root) / "reports" / f"failed-{dest.name}.ipynb"
            failed.parent.mkdir(parents=True, exist_ok=True)
            if nb_out.exists():
                shutil.copyfile(nb_out, failed)
            raise TifkitError(f"The report notebook stopped at cell {e.exec_count} ({e.ename}: "
                              f"{str(e.evalue).splitlines()[0] if e.evalue else ''}); the partly run copy is "
                              f"{failed}.") from None
        write_html(nb_out, tmp / "report.html")
        publish_folder(tmp, dest, "report")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    say(f"[tifkit] data report -> {dest / 'report.html'} (executed notebook: {dest / 'report.ipynb'})")
    return dest


def write_html(ipynb: str | os.PathLike, html: str | os.PathLike) -> Path:
    """The executed notebook as one static HTML page (nbconvert's HTML exporter; figures are embedded
    as base64 <img> data, so the page stands alone)."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(str(ipynb), as_version=4)
    body, _ = HTMLExporter().from_notebook_node(nb)
    Path(html).write_text(body, encoding="utf-8")
    return Path(html)
