"""The stages end to end, each cached on disk and skipped when its output exists.

    world/data -> SFT (tiny families) -> warm-up -> validation model -> scores -> select
               -> continuation per rule -> evaluation

Layout of a run folder (``run.root``/<name>-<key>, the key a content hash of every parameter that
changes the trained models)::

    params.yaml                 the parameters as loaded
    data/train.parquet ...      D_tr, D_val and the test prompts actually used
    models/warmup/              one epoch of DPO on D_tr from the SFT model
    models/val/                 one epoch on D_val from the warm-up model (or SFT)
    models/<rule>-<keep>/       two epochs on a selection from the warm-up model
    scores/<key>.parquet        the per-pair score table (scores.py)
    selections/<rule>.parquet   pair ids kept by each rule
    eval/<label>/               generations, per-prompt verdicts, summary

SFT models of the tiny families are shared between runs: ``run.root``/cache/sft/<family>-<world>-<seed>-<key>.

Public steps (what the experiments and the batch build on; each cached and resumable):

    prepare(params, seed) -> Context        data, tokenizer, run folder
    sft_stage / warmup_stage / val_stage    the shared models
    train_on(ctx, pairs, out, ...)          DPO/SLiC from a stage on any pairs, seeded by ctx.train_seed:
                                            the one training path (stages, continuations, IF groups)
    continue_stage(ctx, label, mask)        two epochs from warm-up on a selection
    score_key(ctx) / core_scores(ctx)       the score cache key (one formula) and the core score table
                                            (IRM, LossDiff, IF; no TIF flags, no reward-model margin)
    score_stage(ctx)                        the full score table (core + rm_margin + the run's TIF flags)
    selection_mask / evaluate_stage / evaluate_sets
"""
from __future__ import annotations

import dataclasses
import os
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from tifkit import TifkitError
from tifkit.config import Params, dump_params
from tifkit.data import load_pairs, resolve_source
from tifkit.evaluate import build_judge, evaluate_from_params, evaluate_policy
from tifkit.io import (atomic_write_text, content_hash, parquet_ok, running_source_hash, stage_complete, stage_lock,
                       sweep_temps, table_unchanged, write_parquet)
from tifkit.losses import Objective, objective_from_params
from tifkit.models import apply_lora, build_tiny_model, resolve_device, resolve_dtype
from tifkit.rules import get_rule
from tifkit.scores import run_scoring, verify_table
from tifkit.select import select, tif_settings, with_tif
from tifkit.tokenizer import build_char_tokenizer
from tifkit.train import dpo_train, save_stage, sft_train
from tifkit.world import WORLD_VERSION, build_world, sft_key
# deferred: tifkit.reward (imports transformers' model classes, ~5 s; only the reward-model stage needs it)

log = logging.getLogger(__name__)
# the stage-making code's source hash, read from the files when this module is imported (the code this
# process runs), not at its first save: stage.json records it (tifkit.io.save_stage)
running_source_hash()


def say(msg: str) -> None:
    print(f"[tifkit] {msg}", flush=True)


# ------------------------------------------------------------------------------------------ context
@dataclass
class Context:
    """Everything the stages share: parameters, data, folders, tokenizer, device."""

    params: Params
    seed: int
    run_dir: Path
    train: pd.DataFrame
    val: pd.DataFrame
    test_prompts: list[str]
    tokenizer: object
    device: torch.device
    world: object | None = None
    sft_demos: pd.DataFrame | None = None
    model_seed: int | None = None  # run.model_seed; None = the world seed
    data_note: str = ""  # what cleaning and the D_val hold-out did to the data (own-data route)
    _models: dict = field(default_factory=dict)

    @property
    def p(self) -> Params:
        return self.params

    @property
    def train_seed(self) -> int:
        """Seed of model initialization and training (SFT, DPO stages, reward model); `seed` is the
        world/data seed."""
        return self.seed if self.model_seed is None else self.model_seed

    @property
    def objective(self) -> Objective:
        """The run's loss, beta and IF measurement (tifkit.losses.objective_from_params)."""
        return objective_from_params(self.p)

    def model_dir(self, name: str) -> Path:
        return self.run_dir / "models" / name


def _training_key(p: Params, seed: int) -> str:
    """Hash of every parameter that changes a trained model (scoring/selection/eval excluded)."""
    d = p.to_dict()
    keep = {k: d[k] for k in ("world", "data", "model", "sft", "train")}
    keep["seed"] = seed
    if p.run.model_seed is not None:  # absent when None, so existing run folders keep their hash
        keep["model_seed"] = p.run.model_seed
    if p.data.source == "world":
        keep["world_version"] = WORLD_VERSION
    return content_hash(keep)


def prepare(params: Params, seed: int | None = None) -> Context:
    """Build or load the data, the tokenizer and the run folder for one seed.

    The run folder is keyed by everything that changes the trained SFT, warm-up and validation
    models (world, data, model, sft, train, seed); scores are keyed by the score parameters inside
    it, and continuation models by the exact set of pairs they were trained on."""
    seed = params.run.seed if seed is None else seed
    p = dataclasses.replace(params, data=resolve_source(params.data))  # data.path without data.source
    mtag = "" if p.run.model_seed is None else f"m{p.run.model_seed}"
    run_dir = Path(p.run.root) / f"{p.run.name}-s{seed}{mtag}-{_training_key(p, seed)}"
    device = resolve_device(p.model.device)

    world = sft_demos = None
    if p.model.is_tiny:
        tokenizer = build_char_tokenizer()
    else:
        from transformers import AutoTokenizer

        name = p.model.tokenizer or p.model.name_or_path
        local = Path(name).expanduser()
        if str(name).startswith((".", "/", "~")) and not local.exists():
            raise TifkitError(f"Model folder {name!r} does not exist: fix model.name_or_path (--model), or write a "
                              "small local one with `tifkit export-tiny DIR`.")
        if local.is_dir() and not (local / "tokenizer_config.json").exists() and not (local / "config.json").exists():
            raise TifkitError(f"Model folder {name!r} holds no Hugging Face checkpoint (no config.json or "
                              "tokenizer_config.json): point --model at a folder written by save_pretrained.")
        if local.exists() and not local.is_dir():
            raise TifkitError(f"--model {name!r} is a file; give the checkpoint's folder (written by save_pretrained).")
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(local) if local.exists() else name,
                                                      trust_remote_code=p.model.trust_remote_code)
        except (OSError, ValueError) as e:
            first = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
            fix = ("the folder's tokenizer files are missing or damaged: save the tokenizer there with save_pretrained, "
                   "or set model.tokenizer to a folder that has one") if local.exists() else \
                  ("it is not a local folder, so it was looked up on the hub: check the id, and run with hub access "
                   "(HF_HUB_OFFLINE=0) once to download it")
            raise TifkitError(f"Could not load the tokenizer of {name!r} ({first}): {fix}.") from None
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token

    if p.data.source == "world":
        world = build_world(p.world, seed)
        train, rep_tr = load_pairs(p.data, tokenizer=tokenizer, frame=world.train)
        val, rep_val = load_pairs(dataclasses.replace(p.data, max_pairs=None), tokenizer=tokenizer, frame=world.val)
        test_prompts = list(world.test.prompt)
        sft_demos = world.sft
        data_note = ""
    else:
        # rows longer than the model's context are counted as too_long unless data.max_tokens says otherwise
        n_ctx, model_name = context_length(p), p.model.name_or_path
        if p.data.max_tokens is not None and n_ctx is not None and p.data.max_tokens > n_ctx:
            raise TifkitError(f"data.max_tokens={p.data.max_tokens} is above the context of model {model_name!r} "
                              f"({n_ctx} tokens): set it to at most {n_ctx}, or leave it null (the model's context).")
        dp = p.data if p.data.max_tokens is not None else dataclasses.replace(p.data, max_tokens=n_ctx)
        context = (f"the context of model {model_name!r}" if p.data.max_tokens is None
                   else f"data.max_tokens (model {model_name!r})")
        pairs, rep_tr = load_pairs(dp, tokenizer=tokenizer, context=context)
        n_val = int(round(p.data.val_size)) if p.data.val_size >= 1 else int(round(p.data.val_size * len(pairs)))
        if not 0 < n_val < len(pairs):
            raise TifkitError(f"data.val_size={p.data.val_size} leaves no training or no validation pairs "
                              f"out of {len(pairs)}; choose a value between 1 and {len(pairs) - 1}.")
        perm = np.random.default_rng(seed).permutation(len(pairs))
        val, train = pairs.iloc[np.sort(perm[:n_val])], pairs.iloc[np.sort(perm[n_val:])]
        train, val = train.reset_index(drop=True), val.reset_index(drop=True)
        test_prompts = []
        data_note = (f"{rep_tr.summary()}; {len(val)} of the {len(pairs)} clean pairs held out as D_val "
                     f"(data.val_size={p.data.val_size:g}), {len(train)} to score and select")
    # the run folder is made once the tokenizer and the data have loaded: a model folder without a
    # loadable tokenizer, or a data file that fails to load, leaves no empty folder behind
    run_dir.mkdir(parents=True, exist_ok=True)
    sweep_temps(run_dir)  # temporary files of killed runs (only those whose process is gone)
    sweep_temps(Path(p.run.root) / "cache")
    text = dump_params(p)
    if _read_or_none(run_dir / "params.yaml") != text:  # unchanged: not rewritten (a read-only run root works)
        atomic_write_text(run_dir / "params.yaml", text)
    data_dir = run_dir / "data"
    for name, df in (("train", train), ("val", val)):
        if not table_unchanged(df, data_dir / f"{name}.parquet"):
            write_parquet(df, data_dir / f"{name}.parquet")
    return Context(params=p, seed=seed, run_dir=run_dir, train=train, val=val, test_prompts=test_prompts,
                   tokenizer=tokenizer, device=device, world=world, sft_demos=sft_demos,
                   model_seed=p.run.model_seed, data_note=data_note)


def _read_or_none(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


def context_length(p: Params) -> int | None:
    """The model's context length (positions), or None when its config does not say."""
    if p.model.is_tiny:
        return p.model.max_positions
    try:
        from transformers import AutoConfig

        cfg = AutoConfig.from_pretrained(p.model.name_or_path, trust_remote_code=p.model.trust_remote_code)
    except Exception:  # noqa: BLE001 - no config readable: no limit (the load itself reports the problem)
        return None
    cfg = getattr(cfg, "text_config", None) or cfg
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        v = getattr(cfg, name, None)
        if isinstance(v, int) and v > 0:
            return v
    return None


# ------------------------------------------------------------------------------------------- models
def load_stage(ctx: Context, path: Path, trainable: bool = True):
    """Load a saved stage (full model or LoRA adapter on the SFT base)."""
    from transformers import AutoModelForCausalLM

    p = ctx.p.model
    if (path / "adapter_config.json").exists():
        from peft import PeftModel

        base = _load_base(ctx)
        model = PeftModel.from_pretrained(base, str(path), is_trainable=trainable)
    else:
        try:
            model = AutoModelForCausalLM.from_pretrained(path, dtype=resolve_dtype(p.dtype),
                                                         trust_remote_code=p.trust_remote_code)
        except (OSError, ValueError, RuntimeError) as e:
            raise TifkitError(f"Could not load the model in {path} ({type(e).__name__}: {str(e).splitlines()[0][:120]}): "
                              "delete that folder and rerun to retrain it.") from None
    model.to(ctx.device)
    if not trainable:
        model.eval()
        for q in model.parameters():
            q.requires_grad_(False)
    return model


def _load_base(ctx: Context):
    """The SFT model, freshly loaded (the reference of every stage)."""
    from transformers import AutoModelForCausalLM

    p = ctx.p.model
    path = sft_stage(ctx)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=resolve_dtype(p.dtype), trust_remote_code=p.trust_remote_code,
                                                     revision=None if Path(str(path)).exists() else p.revision)
    except (OSError, ValueError, RuntimeError) as e:
        raise TifkitError(f"Could not load the model {str(path)!r} ({type(e).__name__}: {str(e).splitlines()[0][:120]}): "
                          "check model.name_or_path (--model) and that its weights are complete.") from None
    return model.to(ctx.device)


def reference(ctx: Context):
    """The frozen reference model pi_ref (= SFT), loaded once per context."""
    if "ref" not in ctx._models:
        ref = _load_base(ctx).eval()
        for q in ref.parameters():
            q.requires_grad_(False)
        ctx._models["ref"] = ref
    return ctx._models["ref"]


def sft_stage(ctx: Context) -> Path | str:
    """The SFT model: trained for tiny families (cached across runs), given for real ones."""
    p = ctx.p
    if not p.model.is_tiny:
        return p.model.name_or_path
    m = p.model
    key = content_hash({"model": dataclasses.asdict(m), "sft": dataclasses.asdict(p.sft)}, 8)
    # keyed by the demonstrations only (world.SFT_FIELDS): worlds that differ in their pairs share it
    wkey = sft_key(p.world, ctx.seed) if p.data.source == "world" else "data"
    out = Path(p.run.root) / "cache" / "sft" / f"{m.family}-{wkey}-s{ctx.train_seed}-{key}"
    if stage_complete(out):
        return out
    if ctx.sft_demos is None:
        raise TifkitError("Tiny families learn the task from the built-in world's demonstrations: use data.source: "
                          "world, or set model.name_or_path (--model) to a real SFT checkpoint, e.g. one written by "
                          "`tifkit export-tiny DIR`.")
    with stage_lock(out):  # a concurrent run training the same stage: wait for it, then reuse its folder
        if stage_complete(out, warn=False):
            return out
        return _train_sft(ctx, out)


def _train_sft(ctx: Context, out: Path) -> Path:
    p, m = ctx.p, ctx.p.model
    t0 = time.time()
    say(f"SFT {m.family} ({p.sft.steps} steps) -> {out}")
    model = build_tiny_model(m.family, ctx.tokenizer, seed=ctx.train_seed, hidden_size=m.hidden_size,
                             num_layers=m.num_layers, num_heads=m.num_heads, max_positions=m.max_positions)
    model, losses = sft_train(model, ctx.tokenizer, ctx.sft_demos.prompt, ctx.sft_demos.response, p.sft, seed=ctx.train_seed,
                              device=str(ctx.device), show_progress=p.run.show_progress)
    save_stage(model, ctx.tokenizer, out, extra={"sft_loss": pd.DataFrame({"loss": losses})},
               info={"name": "sft", "steps": p.sft.steps, "seconds": round(time.time() - t0, 2)})
    return out


def _dpo_stage(ctx: Context, name: str, start: str, pairs: pd.DataFrame, epochs: float) -> Path:
    """Train from `start` ("sft" or another stage name) on `pairs`; cached in models/<name>."""
    return train_on(ctx, pairs, ctx.model_dir(name), start=start, epochs=epochs, name=name)


def train_on(ctx: Context, pairs: pd.DataFrame, out: Path | str, start: str = "warmup", epochs: float | None = None,
             eval_pairs: pd.DataFrame | None = None, eval_steps: int | None = None, name: str | None = None,
             log_name: str = "train_log") -> Path:
    """DPO/SLiC (train.objective) on `pairs` from the stage `start` ("sft", "warmup", or a stage name
    under models/) for `epochs` (default train.continue_epochs), saved to the folder `out`; returns `out`.

    The one training path of the kit: the pipeline's stages, the continuations of every rule and the
    experiments' IF groups all train here, with the reference model (SFT), the run's objective and
    seed `ctx.train_seed`, so that the same pairs give the same model wherever they are trained.
    Cached: a complete `out` (io.stage_complete; with eval_pairs, holding its log) is not retrained; a
    file lock makes a concurrent process wait and reuse it. With `eval_pairs` (e.g. ctx.val) the
    loss and reward margin on them are logged every `eval_steps` optimizer steps into the saved
    log (`<log_name>.parquet`, the numeric entries of TRL's log history)."""
    out = Path(out)
    epochs = ctx.p.train.continue_epochs if epochs is None else float(epochs)

    def done(warn: bool) -> bool:  # with eval_pairs the caller reads the curves from the log: it must be there
        return stage_complete(out, warn=warn) and (eval_pairs is None or (out / f"{log_name}.parquet").exists())

    if done(True):
        return out
    with stage_lock(out):  # a concurrent run training the same stage: wait for it, then reuse its folder
        if done(False):
            return out
        return _train_dpo(ctx, out, name or out.name, start, pairs, epochs, eval_pairs, eval_steps, log_name)


def _train_dpo(ctx: Context, out: Path, name: str, start: str, pairs: pd.DataFrame, epochs: float,
               eval_pairs: pd.DataFrame | None = None, eval_steps: int | None = None,
               log_name: str = "train_log") -> Path:
    p = ctx.p
    if start == "sft":
        model = _load_base(ctx)
        if p.model.lora.enabled:
            model = apply_lora(model, p.model.lora)
    else:
        model = load_stage(ctx, warmup_stage(ctx) if start == "warmup" else ctx.model_dir(start), trainable=True)
    say(f"{p.train.objective.upper()} stage '{name}' from {start} on {len(pairs)} pairs, {epochs:g} epochs -> {out}")
    t0 = time.time()
    model, history = dpo_train(model, reference(ctx), ctx.tokenizer, pairs, p.train, epochs, seed=ctx.train_seed,
                               device=str(ctx.device), show_progress=p.run.show_progress, eval_pairs=eval_pairs,
                               eval_steps=eval_steps)
    hist = pd.DataFrame([{k: v for k, v in h.items() if isinstance(v, (int, float))} for h in history])
    save_stage(model, ctx.tokenizer, out, extra={log_name: hist},  # stage.json (with checksums) last
               info={"name": name, "start": start, "n_pairs": len(pairs), "epochs": epochs,
                     "seconds": round(time.time() - t0, 2)})
    return out


def warmup_stage(ctx: Context) -> Path:
    return _dpo_stage(ctx, "warmup", "sft", ctx.train, ctx.p.train.warmup_epochs)


def val_stage(ctx: Context) -> Path:
    start = "warmup" if ctx.p.train.val_start == "warmup" else "sft"
    return _dpo_stage(ctx, "val", start, ctx.val, ctx.p.train.val_epochs)


def continue_stage(ctx: Context, label: str, keep_mask: np.ndarray) -> Path:
    """Two epochs (train.continue_epochs) from the warm-up model on the kept pairs.

    The model folder is ``models/<label>-<hash of the kept pair ids>``: a selection that changes (other
    scores, band edges, seeds, keep) trains a new model; the same selection reuses the old one."""
    pairs = ctx.train[np.asarray(keep_mask, dtype=bool)]
    name = f"{label}-{content_hash(sorted(pairs.pair_id.tolist()), 8)}"
    sel_path = ctx.run_dir / "selections" / f"{name}.parquet"
    if not sel_path.exists():
        write_parquet(pairs[["pair_id"]], sel_path)
    return _dpo_stage(ctx, name, "warmup", pairs, ctx.p.train.continue_epochs)


# ------------------------------------------------------------------------------------------- scoring
def score_stage(ctx: Context) -> Path:
    """The per-pair score table (IRM, LossDiff, IF, TIF, rm_margin) at the warm-up model; cached by parameters."""
    p = ctx.p
    key = score_key(ctx)
    tif_key = content_hash(tif_settings(p.select), 6)  # what the table's `tif` column was made under
    out = ctx.run_dir / "scores" / f"scores-{key}-{tif_key}.parquet"
    if parquet_ok(out, "score table"):
        return out
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:  # under `accelerate launch`: rank 0 trains the stages, the others wait for them
        if rank == 0:
            warmup_stage(ctx), val_stage(ctx), reward_model_stage(ctx)
        else:
            _wait_for(lambda: stage_complete(ctx.model_dir("warmup"), warn=False)
                      and stage_complete(ctx.model_dir("val"), warn=False))
    core = core_scores(ctx)
    if world > 1 and rank != 0:  # rank 0 adds rm_margin and writes the final table
        _wait_for(out.exists)
        return out
    table = with_tif(pd.read_parquet(core), p.select)  # the run's select section decides the band, here only
    rm = reward_model_stage(ctx)
    if rm is not None:
        from tifkit.reward import load_reward_model, rm_margins

        model, tok = load_reward_model(str(rm), trust_remote_code=p.model.trust_remote_code,
                                       device=str(ctx.device))
        table["rm_margin"] = rm_margins(model, tok, ctx.train, batch_size=p.score.batch_size,
                                        max_length=p.train.max_length, progress=p.run.show_progress)
    write_parquet(table, out)
    verify_table(out)  # `tifkit score` never hands back a table that does not read back
    return out


def _wait_for(ready, poll_s: float = 2.0, timeout_s: float = 24 * 3600) -> None:
    t0 = time.time()
    while not ready():
        if time.time() - t0 > timeout_s:
            raise TifkitError("Waited a day for rank 0 to finish its stages; check rank 0's log and rerun.")
        time.sleep(poll_s)


def reward_model_stage(ctx: Context) -> Path | str | None:
    """The reward model of the rm-margin baseline: a given checkpoint, or (world only) a tiny
    Bradley-Terry classifier trained on the world's separate labelled pairs; None otherwise."""
    p = ctx.p
    if p.score.reward_model:
        return p.score.reward_model
    if ctx.world is None:
        return None
    key = content_hash({"steps": p.score.rm_steps, "h": p.model.hidden_size, "l": p.model.num_layers,
                        "world": dataclasses.asdict(p.world)}, 8)
    out = ctx.model_dir(f"reward-{key}")
    if stage_complete(out):
        return out
    with stage_lock(out):
        if stage_complete(out, warn=False):
            return out
        say(f"reward model on {len(ctx.world.rm_train)} separate labelled pairs -> {out}")
        from tifkit.reward import train_reward_model

        train_reward_model(ctx.world.rm_train, ctx.tokenizer, steps=p.score.rm_steps, seed=ctx.train_seed,
                           hidden_size=p.model.hidden_size, num_layers=p.model.num_layers, out_dir=out,
                           progress=p.run.show_progress)
    return out


def score_key(ctx: Context) -> str:
    """The cache key of the run's score tables: the score section, beta and the objective (the one
    formula; core_scores and score_stage name their files by it)."""
    p = ctx.p
    return content_hash({"score": dataclasses.asdict(p.score), "beta": p.train.beta, "obj": p.train.objective}, 10)


def core_scores(ctx: Context) -> Path:
    """The core score table ``scores/core-<score_key>.parquet``: IRM, LossDiff and IF through
    scores.run_scoring (resumable, shardable), after the SFT, warm-up and validation stages; no TIF
    flags and no reward-model margin (score_stage adds both: the TIF flags by select.with_tif with the
    run's select parameters). Cached."""
    p = ctx.p
    key = score_key(ctx)
    out = ctx.run_dir / "scores" / f"core-{key}.parquet"
    if parquet_ok(out, "score table"):
        return out
    dirs = {"policy": warmup_stage(ctx), "ref": sft_stage(ctx), "val": val_stage(ctx)}
    say(f"scoring {len(ctx.train)} pairs (IRM, LossDiff, IF: {p.score.influence}) -> {out}")
    sp = p.score if p.score.max_length is not None else dataclasses.replace(p.score, max_length=p.train.max_length)

    def loader(name, folder):
        # the policy keeps its trainable parameters (all, or the LoRA adapters): IF runs over those
        return (load_stage(ctx, Path(folder), trainable=(name == "policy")) if name != "ref" else reference(ctx)), ctx.tokenizer

    return run_scoring(dirs, ctx.train, ctx.val, sp, ctx.objective, out_path=out,
                       work_dir=out.parent / f".work-{key}", model_params=p.model, show_progress=p.run.show_progress,
                       loader=loader)


def selection_mask(ctx: Context, rule: str, keep: float | None = None, table: pd.DataFrame | None = None) -> np.ndarray:
    """Boolean mask over D_tr for `rule` (a name of the rule registry, tifkit.rules). Rules that read
    no score column (full, random) and the ground-truth control (oracle: drops the world's mislabelled
    pairs) select on the pair table; the others on the score table (`table`, else the run's)."""
    spec = get_rule(rule)
    if spec.ground_truth or not spec.needs_scores:
        table = ctx.train
    elif table is None:
        table = pd.read_parquet(score_stage(ctx))
    sp = dataclasses.replace(ctx.p.select, rule=spec.name, keep=ctx.p.select.keep if keep is None else keep)
    return select(table, sp).mask


# ------------------------------------------------------------------------------------------ evaluation
def _model_key(ctx: Context, label: str, model_dir) -> str:
    """Generation-cache key of a stage: its folder (unique per selection), not the label."""
    return f"{ctx.run_dir.name}/sft" if label == "sft" else f"{ctx.run_dir.name}/{Path(model_dir).name}"


def evaluate_stage(ctx: Context, label: str, model_dir: Path | str):
    """WinRate / SingleScore of a stage against the SFT model on the test prompts (cached generations)."""
    p = ctx.p
    if not ctx.test_prompts:
        raise TifkitError("No test prompts: the built-in world provides them; for real data use `tifkit evaluate` "
                          "with evaluate.prompt_sets.")
    judge = build_judge(p.eval, cache_dir=ctx.run_dir / "eval")
    policy = load_stage(ctx, Path(model_dir), trainable=False) if label != "sft" else reference(ctx)
    res = evaluate_policy(policy, reference(ctx), ctx.tokenizer, ctx.test_prompts, judge, p.eval,
                          cache_dir=ctx.run_dir / "eval" / "generations", policy_key=_model_key(ctx, label, model_dir),
                          ref_key=f"{ctx.run_dir.name}/sft", table_path=ctx.run_dir / "eval" / f"{label}.parquet",
                          show_progress=p.run.show_progress)
    return res


def evaluate_sets(ctx: Context, label: str, model_dir: Path | str) -> dict:
    """Evaluate a stage against SFT on every prompt set of `eval.prompt_sets` ("world" = the world's
    test prompts; UltraFeedback, AlpacaEval, Vicuna, Arena-Hard by hub id or local JSONL).
    Writes eval/<label>/eval_<set>.parquet and eval_summary.json; returns {set: EvalResult}."""
    policy = load_stage(ctx, Path(model_dir), trainable=False) if label != "sft" else reference(ctx)
    return evaluate_from_params(ctx.p.eval, policy, reference(ctx), ctx.tokenizer, ctx.run_dir / "eval" / label,
                                world_prompts=ctx.test_prompts or None,
                                cache_dir=ctx.run_dir / "eval" / "generations",
                                policy_key=_model_key(ctx, label, model_dir), ref_key=f"{ctx.run_dir.name}/sft",
                                show_progress=ctx.p.run.show_progress)


def smoke(params: Params, seed: int | None = None) -> dict:
    """SFT (tiny families), warm-up and full-data DPO, then the evaluation.

    On the world: the oracle rewards of SFT and DPO on the test prompts and DPO's WinRate. On other
    data (a real family): WinRate and SingleScore on every set of `eval.prompt_sets`."""
    t0 = time.time()
    ctx = prepare(params, seed)
    say(f"run folder: {ctx.run_dir}")
    sft_stage(ctx)
    warmup_stage(ctx)
    full_dir = continue_stage(ctx, "full", selection_mask(ctx, "full"))
    obj = params.train.objective.upper()
    if not ctx.test_prompts:  # real data: the benchmark prompt sets
        results = evaluate_sets(ctx, "full", full_dir)
        out = {"seed": ctx.seed, "seconds": round(time.time() - t0, 1), "run_dir": str(ctx.run_dir),
               "sets": {k: r.summary() for k, r in results.items()}}
        atomic_write_text(ctx.run_dir / "smoke.json", json.dumps(out, indent=2, default=str))
        for name, r in results.items():
            say(f"{name}: WinRate of {obj} vs SFT {r.winrate.estimate:.3f} [{r.winrate.lo:.3f}, {r.winrate.hi:.3f}] "
                f"on {len(r.table)} prompts")
        say(f"outputs: {ctx.run_dir}")
        return out
    res = evaluate_stage(ctx, "full", full_dir)
    t = res.table
    out = {
        "seed": ctx.seed,
        "sft_reward": float(t["score_ref"].mean()),
        "dpo_reward": float(t["score_policy"].mean()),
        "winrate": res.winrate.estimate, "winrate_lo": res.winrate.lo, "winrate_hi": res.winrate.hi,
        "counts": res.counts, "seconds": round(time.time() - t0, 1), "run_dir": str(ctx.run_dir),
    }
    atomic_write_text(ctx.run_dir / "smoke.json", json.dumps(out, indent=2))
    say(f"oracle reward on {len(t)} test prompts: SFT {out['sft_reward']:.3f}, full-data "
        f"{obj} {out['dpo_reward']:.3f}")
    say(f"WinRate of {obj} vs SFT: {out['winrate']:.3f} "
        f"[{out['winrate_lo']:.3f}, {out['winrate_hi']:.3f}] (win/tie/loss {res.counts['win']}/{res.counts['tie']}/"
        f"{res.counts['loss']})")
    say(f"outputs: {ctx.run_dir}")
    return out
