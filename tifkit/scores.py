"""IRM, LossDiff, IF and TIF for every training pair -> one Parquet score table per (model, data).

Two entry points:

- `score_table(policy, ref, val_model, tokenizer, train_df, val_df, params, objective, ...)`: in memory,
  returns the table (one row per training pair, in `train_df` order).
- `run_scoring(model_dirs, train_df, val_df, params, objective, out_path=..., work_dir=..., ...)`: the
  same table from checkpoint folders, resumable and shardable over processes, written to `out_path`.

Columns (METHOD.md "Scores"; logp_* are sums over response tokens unless `reduction="mean"`):

    pair_id                              str
    logp_{policy,ref,val}_{chosen,rejected}  float64  log pi(y|x) under warm-up policy theta, the
                                         reference (SFT) model, the validation model theta_val
    irm                                  float64  h_theta(d) = beta*((pc - rc) - (pr - rr))
    loss_policy, loss_val                float64  loss(theta; d), loss(theta_val; d): DPO
                                         -log sigmoid(h) (loss_type "sigmoid") or SLiC max(0, 1-h) ("hinge")
    lossdiff                             float64  loss_policy - loss_val   (`pair_lossdiff`, the one formula)
    if                                   float64  <grad loss(theta; d), g_val>   (absent if influence="none";
                                                  which losses each side uses: score.if_measure, influence.py)
    tif                                  bool     what select.py's "tif" rule keeps under the run's select
                                                  section (select.with_tif); only when select_params is
                                                  given (the pipeline adds it to its final table; its
                                                  core cache has none); absent if influence="none"
    prompt_tokens, chosen_tokens, rejected_tokens  int64  token counts after TRL truncation
    trl_dropped                          bool     TRL's DPOTrainer would drop this pair (prompt >= max_length)
    score_chosen, score_rejected         as given, when train_df has them
    gt_*                                 every ground-truth column of train_df, untouched (never read here)

Chunks. The training pairs are cut into chunks of `chunk_size` consecutive rows. Every per-pair
computation (log-probs, IF batches) runs inside one chunk, so a pair's scores depend on its chunk
only, never on which process scored it or in what order. IF uses g_val, the mean validation-loss
(or, with score.if_measure, validation-margin)
gradient over the whole D_val at theta, computed once per process (each process needs it in memory
anyway; saving it would cost a file the size of the trainable parameters) by the same deterministic
code, so all processes hold the same g_val. `score_table` runs the chunks in one loop.

Sharding and resume (`run_scoring`). Under `accelerate launch` process r of N scores the chunks
c with c % N == r; a plain `python` call is one process. Each finished chunk is written atomically
to `work_dir/chunk-00003.parquet` (pair_id plus the computed columns) with a key in the file's
metadata: a hash of the three models' weights, the chunk's and D_val's token ids, the parameters,
the Objective's beta and loss_type, and a checksum of its values. A rerun skips a chunk whose file carries the right
key and pair_ids and passes its checksum, and recomputes any other with a warning (a kill leaves no half
file: files are renamed into place; a damaged one is recomputed). Every computed chunk
appends a line to `work_dir/chunks.log`. After a barrier, process 0 reads the chunk files in order,
adds `tif` when select_params is given (a percentile band over all of D_tr, hence only here) and the
passed-through columns, and
writes `out_path` atomically; every process returns `out_path` (work_dir and out_path must be on a
filesystem every process sees). The merged table is always built from
the chunk files, with a fixed column order and schema and no timestamps, so it is byte-identical for
one or many processes and for fresh or resumed runs (same machine, same threads per process).
Reference log-probs go through `cached_pair_logprobs` (`work_dir/ref-logps`).

Launching on CPUs: accelerate 1.15's `launch --cpu` starts one process (more need mpirun); start N
CPU processes with `accelerate launch --multi_gpu --num_processes N` on a machine without CUDA
(`run_scoring` then asks accelerate for the gloo backend). Set OMP_NUM_THREADS to the same value for
every run you want to compare byte for byte.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from tifkit import TifkitError
from tifkit.config import ScoreParams  # noqa: F401  (parameter section; lives in config.py)
from tifkit.influence import ValidationTarget, cast_for_scoring, validation_gradient
from tifkit.io import CorruptCache, content_hash, note_progress, read_verified, write_table
from tifkit.logprobs import TokenizedPairs, cached_pair_logprobs, model_content_hash, pair_logprobs, tokenize_pairs
from tifkit.losses import Objective, require_objective
from tifkit.memory import check_memory, estimate_for_models, resident_bytes
from tifkit.models import ModelParams, load_model
from tifkit.select import with_tif

log = logging.getLogger(__name__)


PASS_THROUGH = ("score_chosen", "score_rejected")


def _check(params: ScoreParams, train_df: pd.DataFrame, val_df: pd.DataFrame | None) -> None:
    if params.chunk_size < 1 or params.batch_size < 1:
        raise TifkitError(f"score.chunk_size and score.batch_size must be >= 1 (got {params.chunk_size}, {params.batch_size}).")
    if params.influence not in ("batched", "loop", "projected", "none"):
        raise TifkitError(f"Unknown score.influence {params.influence!r}; use batched, loop, projected or none.")
    if (params.influence == "projected") != (params.project_dim is not None):
        raise TifkitError("Set score.project_dim together with score.influence: projected (and only then).")
    if "pair_id" not in train_df.columns or not train_df["pair_id"].is_unique:
        raise TifkitError("The training pairs need a unique 'pair_id' column; load them with tifkit.data.load_pairs.")
    if len(train_df) == 0:
        raise TifkitError("The training set is empty; give at least one pair to score.")
    if params.influence != "none" and (val_df is None or len(val_df) == 0):
        raise TifkitError("IF needs validation pairs: give val_df, or set score.influence: none.")


def scoring_objective(params: ScoreParams, objective: Objective) -> Objective:
    """The Objective a score table is computed with: `objective` (a tifkit.losses.Objective, e.g.
    `objective_from_params(p)`), checked against the score section. Raises TypeError for anything
    but an Objective, and TifkitError when its measurement disagrees with score.if_measure."""
    obj = require_objective(objective)
    if obj.measure != params.if_measure:
        raise TifkitError(f"The objective measures {obj.measure!r} but score.if_measure is {params.if_measure!r}; "
                          "make them agree (tifkit.losses.objective_from_params does).")
    return obj


def pair_lossdiff(objective: Objective, policy_logps, val_logps, ref_logps):
    """LossDiff per pair, the one formula every module uses: (loss_policy, loss_val, lossdiff) with
    loss_policy = objective.pair_loss under the warm-up policy theta, loss_val the same under the
    validation model theta_val, and lossdiff = loss_policy - loss_val. Each *_logps is a (chosen,
    rejected) pair of arrays of log-probs (numpy float64 or torch tensors; returns the same kind)."""
    (pc, pr), (vc, vr), (rc, rr) = policy_logps, val_logps, ref_logps
    loss_policy = objective.pair_loss(pc, pr, rc, rr)
    loss_val = objective.pair_loss(vc, vr, rc, rr)
    return loss_policy, loss_val, loss_policy - loss_val


def _longest(*toks) -> int:
    """The longest sequence (prompt + response tokens) of the given tokenized sets (for the memory estimate)."""
    return max((int(max(c.max(), r.max())) for t in toks if t is not None and len(t) for c, r in [t.sequence_lengths()]),
               default=0)


def _chunks(n: int, size: int) -> list[range]:
    return [range(s, min(n, s + size)) for s in range(0, n, size)]


class _Scorer:
    """What every chunk needs, computed once per process: models, D_val's reference log-probs, g_val."""

    def __init__(self, policy, ref, val_model, val_tok, params: ScoreParams, objective: Objective, cache_dir,
                 show_progress, seq_len: int | None = None):
        # score.dtype: cast copies (models untouched); then the memory estimate, before any batch runs
        policy, ref, val_model = (cast_for_scoring(m, params.dtype) for m in (policy, ref, val_model))
        if seq_len:
            est = estimate_for_models(policy, [ref, val_model], params.batch_size, seq_len, params.influence != "none")
            dev = next(policy.parameters()).device
            check_memory(est, dev, params.memory_budget_gb, batch_pairs=params.batch_size,
                         say=print if show_progress else log.info, resident=resident_bytes([policy, ref, val_model], dev))
        self.policy, self.ref, self.val_model = policy, ref, val_model
        self.p, self.objective, self.cache_dir = params, objective, cache_dir
        self.ref_hash = model_content_hash(ref) if cache_dir is not None else None
        self.method = params.influence
        if self.method == "none":
            return
        ref_val = self.ref_logps(val_tok)
        g_val = validation_gradient(policy, val_tok, ref_val, objective, params.reduction, params.batch_size,
                                    show_progress)
        self.target = ValidationTarget(policy, g_val, objective, self.method, params.project_dim, params.project_seed)

    def ref_logps(self, tok: TokenizedPairs):
        kw = dict(batch_size=self.p.batch_size, reduction=self.p.reduction, show_progress=False)
        if self.cache_dir is None:
            return pair_logprobs(self.ref, tok, **kw)
        return cached_pair_logprobs(self.ref, tok, self.cache_dir, model_hash=self.ref_hash, **kw)

    def influence(self, tok: TokenizedPairs, ref_lp, chunk_index: int) -> np.ndarray:
        # the batched path's autograd check runs on the first batch of chunk 0 only: rank-independent
        return self.target.scores(tok, ref_lp, reduction=self.p.reduction, batch_size=self.p.batch_size,
                                  verify=chunk_index == 0, show_progress=False)

    def chunk(self, tok: TokenizedPairs, chunk_index: int) -> pd.DataFrame:
        """pair_id and every computed column except `tif`, for the pairs of `tok`."""
        kw = dict(batch_size=self.p.batch_size, reduction=self.p.reduction, show_progress=False)
        pc, pr = pair_logprobs(self.policy, tok, **kw)
        rc, rr = self.ref_logps(tok)
        vc, vr = pair_logprobs(self.val_model, tok, **kw)
        obj = self.objective
        loss_policy, loss_val, lossdiff = pair_lossdiff(obj, (pc, pr), (vc, vr), (rc, rr))
        cols = {
            "pair_id": pd.Series(tok.pair_ids, dtype=str),
            "logp_policy_chosen": pc, "logp_policy_rejected": pr,
            "logp_ref_chosen": rc, "logp_ref_rejected": rr,
            "logp_val_chosen": vc, "logp_val_rejected": vr,
            "irm": obj.irm(pc, pr, rc, rr),
            "loss_policy": loss_policy, "loss_val": loss_val, "lossdiff": lossdiff,
        }
        if self.method != "none":
            cols["if"] = np.asarray(self.influence(tok, (rc, rr), chunk_index), dtype=np.float64)
        for name, ids in (("prompt", tok.prompt_ids), ("chosen", tok.chosen_ids), ("rejected", tok.rejected_ids)):
            cols[f"{name}_tokens"] = np.array([len(x) for x in ids], dtype=np.int64)
        cols["trl_dropped"] = np.asarray(tok.trl_dropped, dtype=bool)
        return pd.DataFrame(cols)


def _finish(scored: pd.DataFrame, train_df: pd.DataFrame, select_params=None) -> pd.DataFrame:
    """Add `tif` after `if` only when `select_params` is given (select.with_tif: the select layer
    derives it, never with default parameters), then score_* and gt_* columns of train_df."""
    table = scored.reset_index(drop=True)
    if select_params is not None:
        table = with_tif(table, select_params)
    extra = [c for c in PASS_THROUGH if c in train_df.columns] + [c for c in train_df.columns if str(c).startswith("gt_")]
    return pd.concat([table, train_df[extra].reset_index(drop=True)], axis=1)


def score_table(policy, ref, val_model, tokenizer, train_df: pd.DataFrame, val_df: pd.DataFrame | None,
                params: ScoreParams, objective: Objective, cache_dir=None, show_progress: bool = True,
                select_params=None) -> pd.DataFrame:
    """The score table (see the module docstring) of `train_df` for warm-up policy `policy`, reference
    `ref` and validation model `val_model`; `val_df` gives D_val for IF (unused with influence="none").
    `objective` is the run's tifkit.losses.Objective (`objective_from_params(p)`; its measure must be
    score.if_measure). Reference log-probs are cached in `cache_dir` when given."""
    from tqdm.auto import tqdm

    _check(params, train_df, val_df)
    obj = scoring_objective(params, objective)
    train_tok = tokenize_pairs(tokenizer, train_df, params.max_length)
    val_tok = tokenize_pairs(tokenizer, val_df, params.max_length) if params.influence != "none" else None
    scorer = _Scorer(policy, ref, val_model, val_tok, params, obj, cache_dir, show_progress,
                     seq_len=_longest(train_tok, val_tok))
    chunks = _chunks(len(train_tok), params.chunk_size)
    parts = [scorer.chunk(train_tok.subset(r), c) for c, r in enumerate(tqdm(chunks, desc="scoring chunks", disable=not show_progress))]
    return _finish(pd.concat(parts, ignore_index=True), train_df, select_params)


# ----------------------------------------------------------------------------------------------------
# Resumable, shardable runner
# ----------------------------------------------------------------------------------------------------
_KEY = b"tifkit.chunk_key"


def _write_table(df: pd.DataFrame, path, meta: dict[bytes, bytes]) -> Path:
    """Deterministic atomic Parquet: fixed column order and schema, no timestamps (pyarrow writes none),
    and a checksum of the values (io.write_table) that every reader verifies."""
    return write_table(df, path, meta)


def _write_chunk(df: pd.DataFrame, path: Path, key: str) -> None:
    _write_table(df, path, {_KEY: key.encode()})


def _chunk_done(path: Path, key: str, pair_ids: list[str]) -> bool:
    """The chunk file exists, passes its checksum (values included), and belongs to this run."""
    if not path.exists():
        return False
    try:
        table = read_verified(path)
    except CorruptCache as e:
        log.warning("%s; recomputing that chunk.", e)
        print(f"[tifkit] warning: {e}; recomputing that chunk.", flush=True)
        return False
    ok = (table.schema.metadata or {}).get(_KEY) == key.encode()
    ok = ok and table.column("pair_id").to_pylist() == pair_ids
    if not ok:
        log.warning("%s belongs to another run (key or pair_ids differ); recomputing it.", path)
    return ok


def verify_table(path) -> pd.DataFrame:
    """Read a score table (or chunk) and check its checksum; a damaged file raises TifkitError."""
    try:
        return read_verified(path).to_pandas()
    except CorruptCache as e:
        raise TifkitError(f"Score table {e}: delete it and rerun `tifkit score` to rebuild it.") from None


def run_scoring(model_dirs: dict, train_df: pd.DataFrame, val_df: pd.DataFrame | None, params: ScoreParams,
                objective: Objective, out_path="scores.parquet", work_dir="score-work", model_params=None,
                show_progress: bool = True, loader=None, select_params=None) -> Path:
    """Score `train_df` with the checkpoints `model_dirs` = {"policy", "ref", "val": folder} and write
    the table to `out_path` (Parquet). Resumable and shardable through `work_dir` (module docstring);
    run it under `accelerate launch` for several processes. Returns `out_path` on every process.
    `objective` is the run's tifkit.losses.Objective (`objective_from_params(p)`), as in `score_table`.

    `loader(name, folder) -> (model, tokenizer)` loads each checkpoint (default: `models.load_model`);
    the pipeline passes one that puts LoRA adapters on the SFT base, so that IF runs over the
    adapters (the parameters with requires_grad) only."""
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env
    from tqdm.auto import tqdm

    _check(params, train_df, val_df)
    obj = scoring_objective(params, objective)
    missing = {"policy", "ref", "val"} - set(model_dirs)
    if missing:
        raise TifkitError(f"model_dirs lacks {sorted(missing)}; give the policy, ref and val checkpoint folders.")
    state = PartialState(cpu=not torch.cuda.is_available() or parse_flag_from_env("ACCELERATE_USE_CPU"))
    rank, world = state.process_index, state.num_processes
    model_params = model_params or ModelParams()
    models, tokenizer = {}, None
    for name in ("policy", "ref", "val"):
        models[name], tok = (loader or (lambda _, d: load_model(str(d), model_params)))(name, model_dirs[name])
        tokenizer = tokenizer or tok
        if model_params.device == "auto":
            models[name].to(state.device)
    work_dir, out_path = Path(work_dir), Path(out_path)
    work_dir.mkdir(parents=True, exist_ok=True)

    train_tok = tokenize_pairs(tokenizer, train_df, params.max_length)
    val_tok = tokenize_pairs(tokenizer, val_df, params.max_length) if params.influence != "none" else None
    run_key = content_hash({
        "v": 1, **{k: model_content_hash(m) for k, m in models.items()}, "params": asdict(params), "beta": obj.beta,
        "loss_type": obj.loss_type, "val": val_tok.content_hash() if val_tok is not None else None}, n=64)
    chunks = _chunks(len(train_tok), params.chunk_size)
    path = [work_dir / f"chunk-{c:05d}.parquet" for c in range(len(chunks))]
    toks = [train_tok.subset(r) for r in chunks]
    keys = [content_hash([run_key, t.content_hash(), t.pair_ids], n=64) for t in toks]

    mine = range(rank, len(chunks), world)
    todo = [c for c in mine if not _chunk_done(path[c], keys[c], toks[c].pair_ids)]
    if todo:
        scorer = _Scorer(models["policy"], models["ref"], models["val"], val_tok, params, obj,
                         work_dir / "ref-logps", show_progress and state.is_main_process,
                         seq_len=_longest(train_tok, val_tok))
        note_progress("chunks", len(chunks) - len(todo), len(chunks))
        for k, c in enumerate(tqdm(todo, desc=f"scoring chunks (process {rank}/{world})", disable=not show_progress)):
            _write_chunk(scorer.chunk(toks[c], c), path[c], keys[c])
            note_progress("chunks", len(chunks) - len(todo) + k + 1, len(chunks))
            with open(work_dir / "chunks.log", "a") as f:
                f.write(f"computed {path[c].name} process={rank} pid={os.getpid()}\n")
    log.info("process %d/%d: %d chunk(s) computed, %d already done", rank, world, len(todo), len(mine) - len(todo))

    state.wait_for_everyone()
    if state.is_main_process:
        for c in range(len(chunks)):
            if not _chunk_done(path[c], keys[c], toks[c].pair_ids):
                raise TifkitError(f"Chunk {path[c]} is missing after scoring; rerun run_scoring to compute it.")
        scored = pd.concat([read_verified(p).to_pandas() for p in path], ignore_index=True)
        meta = json.dumps({"params": asdict(params), "beta": obj.beta, "loss_type": obj.loss_type, "run_key": run_key},
                          sort_keys=True)
        _write_table(_finish(scored, train_df, select_params), out_path, {b"tifkit.scores": meta.encode()})
        verify_table(out_path)  # never hand back a table that does not read back
    state.wait_for_everyone()
    return out_path
