"""Evaluation: generation (cached), prompt sets, WinRate and SingleScore with bootstrap intervals.

    result = evaluate_policy(policy, ref, tokenizer, prompts, judge, EvalParams(), cache_dir)
    result.winrate        # Interval(estimate, lo, hi): win 1, tie 0.5, loss 0, mean over prompts
    result.single_score   # Interval: the judge's mean absolute score of the policy's responses
    result.table          # one row per prompt: both responses, verdict, scores, judge details

WinRate and SingleScore are fractions/scores as the judge gives them (multiply WinRate by 100 for
the paper's tables). Intervals are percentile bootstraps over prompts (seeded; tifkit.stats). Judge errors (calls
that failed after all retries) are left out of both and counted in `result.counts["error"]`.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from tifkit import TifkitError
from tifkit.config import EvalParams  # noqa: F401  (parameter section; lives in config.py)
from tifkit.io import atomic_write_text, content_hash, parquet_ok, write_parquet
# the intervals are tifkit.stats' (one statistics module); the names stay importable from here
from tifkit.stats import Interval, bootstrap_interval, paired_bootstrap_diff  # noqa: F401
from tifkit.judges import (VALUES, Judge, LLMJudge, OracleJudge, RewardModelJudge, ScoreJudge,
                           Verdict)
from tifkit.world import target_of
# deferred: tifkit.logprobs (imports torch; only generation needs it, so judging and the intervals load without)


def gen_params_of(params: EvalParams) -> dict:
    """The `generate` keyword arguments an `EvalParams` asks for (also the cache key)."""
    return {"max_new_tokens": params.max_new_tokens, "do_sample": params.do_sample,
            "temperature": params.temperature, "top_p": params.top_p,
            "batch_size": params.batch_size, "seed": params.seed,
            "use_chat_template": {"auto": None, "on": True, "off": False}[params.chat_template]}


# ----------------------------------------------------------------------------------------------
# Generation


def _eos_ids(model, tokenizer) -> list[int]:
    """End-of-sequence ids of the tokenizer and of the model's generation config (e.g. Llama-3's
    <|eot_id|>)."""
    ids = {tokenizer.eos_token_id}
    cfg_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(cfg_eos if isinstance(cfg_eos, (list, tuple)) else [cfg_eos])
    return sorted(i for i in ids if i is not None)


def _as_prompt_list(prompts) -> list[str]:
    if isinstance(prompts, pd.DataFrame):
        if "prompt" not in prompts.columns:
            raise TifkitError("The prompt table has no 'prompt' column; pass a DataFrame with a "
                              "'prompt' column or a list of strings.")
        prompts = prompts["prompt"]
    prompts = list(prompts)
    bad = next((p for p in prompts if not isinstance(p, str)), None)
    if bad is not None:
        raise TifkitError(f"Prompts must be strings, got {type(bad).__name__}; pass the user "
                          "message text (chat templates are applied at generation).")
    return prompts


def generate(model, tokenizer, prompts: Sequence[str], max_new_tokens: int = 128,
             do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0,
             batch_size: int = 16, seed: int = 0, show_progress: bool = True,
             use_chat_template: bool | None = None) -> list[str]:
    """Generate one response per prompt; returns only the new text (special tokens dropped).

    Batches are left-padded (prompts sorted by length, results in the input order). Each response
    stops at the first end-of-sequence token. With a chat template (default: when the tokenizer
    has one) each prompt becomes one user turn plus the generation prompt. Sampling is seeded
    without touching the caller's global RNG state.
    """
    import torch
    from tqdm.auto import tqdm
    from transformers import GenerationConfig

    prompts = _as_prompt_list(prompts)
    if use_chat_template is None:
        use_chat_template = bool(getattr(tokenizer, "chat_template", None))
    if use_chat_template:
        texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                               add_generation_prompt=True) for p in prompts]
    else:
        texts = prompts
    ids = [tokenizer(t, add_special_tokens=not use_chat_template)["input_ids"] for t in texts]
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    eos = _eos_ids(model, tokenizer)
    device = next(model.parameters()).device

    pad_side, pad_token = tokenizer.padding_side, tokenizer.pad_token
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    sampling = {"temperature": temperature, "top_p": top_p} if do_sample else {}
    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=do_sample,
                              pad_token_id=tokenizer.pad_token_id, eos_token_id=eos, **sampling)
    was_training = model.training
    model.eval()
    out: list[str | None] = [None] * len(prompts)
    rng_devices = [device.index or 0] if device.type == "cuda" else []
    try:
        tokenizer.padding_side = "left"
        with torch.random.fork_rng(devices=rng_devices), torch.inference_mode():
            torch.manual_seed(seed)
            starts = range(0, len(order), batch_size)
            for s in tqdm(starts, desc="generate", disable=not show_progress):
                batch = order[s:s + batch_size]
                enc = tokenizer.pad([{"input_ids": ids[i]} for i in batch], padding=True,
                                    return_tensors="pt").to(device)
                new = model.generate(**enc, generation_config=config)[:, enc["input_ids"].shape[1]:]
                for i, row in zip(batch, new.tolist()):
                    cut = next((k for k, t in enumerate(row) if t in eos), len(row))
                    out[i] = tokenizer.decode(row[:cut], skip_special_tokens=True)
    finally:
        tokenizer.padding_side, tokenizer.pad_token = pad_side, pad_token
        model.train(was_training)
    return out


def weights_hash(model, n: int = 16) -> str:
    """Hash of every tensor in the model's state dict (logprobs.model_content_hash), shortened."""
    from tifkit.logprobs import model_content_hash

    return model_content_hash(model)[:n]


def tokenizer_hash(tokenizer, n: int = 16) -> str:
    """Hash of a tokenizer's vocabulary, special tokens and chat template."""
    return content_hash({"vocab": sorted(tokenizer.get_vocab().items()),
                         "special": tokenizer.special_tokens_map,
                         "chat_template": getattr(tokenizer, "chat_template", None)}, n)


def cached_generate(model, tokenizer, prompts: Sequence[str], gen_params: dict | None,
                    cache_dir: str | os.PathLike, model_key: str | None = None,
                    show_progress: bool = True) -> list[str]:
    """`generate` with an on-disk cache: `cache_dir/gen-<key>.parquet` (prompt, response).

    The key is (model identity, tokenizer, prompt set, `gen_params`). The model identity is
    `model_key` when given (e.g. the checkpoint's run folder), else a hash of its weights (which
    reads every weight once). A rerun with the same key reads the file and generates nothing; a
    file that fails its checksum is regenerated (with a warning).
    """
    prompts = _as_prompt_list(prompts)
    gen_params = dict(gen_params or {})
    key = {"model": model_key or weights_hash(model), "tokenizer": tokenizer_hash(tokenizer),
           "prompts": content_hash(prompts, 16), "n_prompts": len(prompts), "gen": gen_params}
    path = Path(cache_dir) / f"gen-{content_hash(key, 16)}.parquet"
    if parquet_ok(path, "generation cache"):
        cached = pd.read_parquet(path)
        if cached["prompt"].tolist() == prompts:
            return cached["response"].tolist()
    responses = generate(model, tokenizer, prompts, show_progress=show_progress, **gen_params)
    write_parquet(pd.DataFrame({"prompt": prompts, "response": responses}), path)
    atomic_write_text(path.with_suffix(".json"), json.dumps(key, indent=2))
    return responses


# ----------------------------------------------------------------------------------------------
# Prompt sets

# name -> datasets.load_dataset arguments, the column to read, and the expected size
HUB_PROMPT_SETS = {
    "ultrafeedback": {"args": ("HuggingFaceH4/ultrafeedback_binarized",),
                      "kwargs": {"split": "test_prefs"}},
    "alpacaeval": {"args": ("json",), "expected": 805, "kwargs": {
        "data_files": "hf://datasets/tatsu-lab/alpaca_eval/alpaca_eval.json", "split": "train"}},
    "arena-hard": {"args": ("json",), "expected": 500, "kwargs": {
        "data_files": "hf://datasets/lmarena-ai/arena-hard-auto/data/arena-hard-v0.1/question.jsonl",
        "split": "train"}},
    "vicuna": {"args": None, "expected": 80},  # no canonical hub copy: FastChat's question.jsonl
}


def _prompt_of(row: dict) -> str | None:
    """The user prompt of one record: `prompt`, `instruction`, `question` or the first of
    `turns` (a string or a {"content": ...} message)."""
    for name in ("prompt", "instruction", "question", "turns"):
        value = row.get(name)
        if isinstance(value, (list, tuple, np.ndarray)) and len(value):
            value = value[0]
        if isinstance(value, dict):
            value = value.get("content")
        if isinstance(value, str):
            return value
    return None


def _prompts_from_records(records: list[dict], source: str) -> list[str]:
    prompts = [_prompt_of(r) for r in records]
    missing = sum(p is None for p in prompts)
    if missing:
        raise TifkitError(f"{missing} of {len(prompts)} records in {source} have no prompt; give "
                          "each record a 'prompt' (or 'instruction' / 'turns') text field.")
    return prompts


def load_prompt_set(name_or_path, prompts=None, max_prompts: int | None = None) -> list[str]:
    """The prompts of one evaluation set, as a list of strings.

    `name_or_path` is a list/Series/DataFrame of prompts; "world" (the pipeline passes the world's
    test prompts as `prompts`); a local .jsonl/.json/.parquet file whose records have a `prompt`
    (or `instruction` / `turns`) field; or a known name: "ultrafeedback" (test_prefs split),
    "alpacaeval" (805), "arena-hard" (500), "vicuna" (80, local file only).
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        out = _as_prompt_list(name_or_path)
    elif str(name_or_path) == "world":
        if prompts is None:
            raise TifkitError("Prompt set 'world' needs the world's test prompts; pass "
                              "prompts=<list of strings> (the pipeline does this).")
        out = _as_prompt_list(prompts)
    elif Path(name_or_path).is_file():
        path = Path(name_or_path)
        if path.suffix == ".parquet":
            records = pd.read_parquet(path).to_dict("records")
        else:
            try:
                records = pd.read_json(path, lines=path.suffix != ".json").to_dict("records")
            except ValueError:
                raise TifkitError(f"Could not read {path} as JSON lines; write one JSON object "
                                  "with a 'prompt' field per line.") from None
        out = _prompts_from_records(records, str(path))
    elif str(name_or_path) in HUB_PROMPT_SETS:
        out = _load_hub_prompt_set(str(name_or_path))
    elif _looks_like_path(name_or_path):
        raise TifkitError(f"Prompt set file {str(name_or_path)!r} does not exist; fix the path in "
                          "eval.prompt_sets (a JSONL file with a 'prompt' field per line).")
    else:
        raise TifkitError(f"Unknown prompt set {str(name_or_path)!r}; use one of "
                          f"{['world', *HUB_PROMPT_SETS]} or a path to a JSONL file with a "
                          "'prompt' field per line.")
    return out[:max_prompts] if max_prompts is not None else out


def _looks_like_path(name) -> bool:
    text = str(name)
    return os.sep in text or "/" in text or Path(text).suffix.lower() in (".jsonl", ".json", ".parquet")


def check_prompt_sets(params: EvalParams, has_world: bool) -> None:
    """Judge / prompt-set compatibility, checked before any training or generation.

    The oracle judge knows only the world's task (own data qualifies when every prompt is one);
    the "world" set needs the built-in world; a prompt-set file must exist."""
    for name in params.prompt_sets:
        if str(name) == "world" and not has_world:
            raise TifkitError("eval.prompt_sets names 'world' but the data are not the built-in world; set "
                              "eval.prompt_sets to your prompts, e.g. --set 'eval.prompt_sets=[examples/prompts.jsonl]'.")
        if str(name) not in ("world", *HUB_PROMPT_SETS) and _looks_like_path(name) and not Path(name).is_file():
            raise TifkitError(f"Prompt set file {str(name)!r} does not exist; fix the path in eval.prompt_sets "
                              "(a JSONL file with a 'prompt' field per line).")
    if params.judge == "oracle" and not has_world:
        for name in params.prompt_sets:
            prompts = load_prompt_set(name, None, params.max_prompts) if Path(str(name)).is_file() else [str(name)]
            for prompt in prompts:
                try:
                    target_of(prompt)
                except ValueError:
                    raise TifkitError(
                        f"The oracle judge scores only the built-in world's task ('sort <letters>:'), and prompt set "
                        f"{str(name)!r} has other prompts (e.g. {prompt[:40]!r}); set eval.judge to 'reward_model' "
                        "(with eval.reward_model) or 'llm' (with eval.llm_base_url).") from None
    if params.judge == "reward_model" and not params.reward_model:
        raise TifkitError("eval.judge is 'reward_model' but eval.reward_model is empty; set eval.reward_model "
                          "to a sequence-classification checkpoint path or hub id.")
    rm = params.reward_model
    if params.judge == "reward_model" and (rm.startswith((".", "/", "~")) or os.sep in rm and Path(rm).parent.exists()) \
            and not Path(rm).expanduser().exists():
        raise TifkitError(f"eval.reward_model {rm!r} does not exist; point it at a sequence-classification "
                          "checkpoint folder (e.g. tiny-sft/reward from `tifkit export-tiny tiny-sft`) or a hub id.")


def _load_hub_prompt_set(name: str) -> list[str]:
    spec = HUB_PROMPT_SETS[name]
    how = (f"pass a local JSONL file with a 'prompt' field per line (prompt_sets: [path/to/"
           f"{name}.jsonl])")
    if spec["args"] is None:
        raise TifkitError(f"Prompt set {name!r} has no hub copy tifkit trusts; {how}, e.g. "
                          "FastChat's fastchat/llm_judge/data/vicuna_bench/question.jsonl.")
    try:
        import datasets

        ds = datasets.load_dataset(*spec["args"], **spec["kwargs"])
    except Exception as e:  # noqa: BLE001 - offline, no access, moved file: one sentence
        raise TifkitError(f"Could not load prompt set {name!r} from the hub ({type(e).__name__}); "
                          f"{how}, or allow hub access (unset HF_HUB_OFFLINE).") from None
    return _prompts_from_records(list(ds), name)


# ----------------------------------------------------------------------------------------------
# Metrics


def verdict_values(verdicts) -> np.ndarray:
    """Win 1, tie 0.5, loss 0, error NaN, from Verdicts, outcome strings or numbers."""
    out = []
    for v in verdicts:
        if isinstance(v, Verdict):
            out.append(v.value)
        elif isinstance(v, str):
            out.append(VALUES[v])
        else:
            out.append(float(v))
    return np.asarray(out, dtype=float)


def winrate(verdicts, n_bootstrap: int = 1000, seed: int = 0, ci: float = 0.95) -> Interval:
    """WinRate (win 1, tie 0.5, loss 0; judge errors left out) with a bootstrap interval over
    prompts."""
    return bootstrap_interval(verdict_values(verdicts), n_bootstrap, seed, ci)


def single_score(scores, n_bootstrap: int = 1000, seed: int = 0, ci: float = 0.95) -> Interval:
    """Mean absolute score (NaN = failed or unparsable, left out) with a bootstrap interval."""
    return bootstrap_interval(scores, n_bootstrap, seed, ci)


def per_prompt_table(prompts, responses_policy, responses_ref, verdicts=None, score_policy=None,
                     score_ref=None) -> pd.DataFrame:
    """One row per prompt: both responses, the verdict for the policy, scores and judge details.
    Without verdicts (judging failed) the verdict column says "not_judged"."""
    n = len(prompts)
    nan = np.full(n, np.nan)
    return pd.DataFrame({
        "prompt": list(prompts),
        "response_policy": list(responses_policy),
        "response_ref": list(responses_ref),
        "verdict": [v.outcome for v in verdicts] if verdicts else ["not_judged"] * n,
        "verdict_value": verdict_values(verdicts) if verdicts else nan,
        "score_policy": nan if score_policy is None else np.asarray(score_policy, float),
        "score_ref": nan if score_ref is None else np.asarray(score_ref, float),
        "judge_error": [v.error for v in verdicts] if verdicts else [None] * n,
        "judge_raw": [json.dumps(v.raw, default=str) for v in verdicts] if verdicts else [None] * n,
    })


# ----------------------------------------------------------------------------------------------
# Putting it together


@dataclass
class EvalResult:
    """WinRate and SingleScore with intervals, the per-prompt table and the judge's stats."""

    winrate: Interval
    single_score: Interval
    table: pd.DataFrame
    judge_stats: dict
    counts: dict  # win / tie / loss / error
    table_path: Path | None = None

    def summary(self) -> dict:
        """A JSON-ready summary (no table)."""
        return {"winrate": self.winrate._asdict(), "single_score": self.single_score._asdict(),
                "counts": self.counts, "n_prompts": len(self.table),
                "judge_stats": self.judge_stats,
                "table_path": str(self.table_path) if self.table_path else None}


def _responses(model_or_responses, tokenizer, prompts, gen, cache_dir, key, show_progress):
    """Generated (cached when `cache_dir`) responses, or the given list of responses."""
    if isinstance(model_or_responses, (list, tuple)):
        if len(model_or_responses) != len(prompts):
            raise TifkitError(f"Got {len(model_or_responses)} responses for {len(prompts)} "
                              "prompts; pass one response per prompt.")
        return list(model_or_responses)
    if cache_dir is None:
        return generate(model_or_responses, tokenizer, prompts, show_progress=show_progress, **gen)
    return cached_generate(model_or_responses, tokenizer, prompts, gen, cache_dir, key,
                           show_progress)


def evaluate_policy(policy, ref, tokenizer, prompts, judge: Judge, params: EvalParams | None = None,
                    cache_dir: str | os.PathLike | None = None, *, policy_key: str | None = None,
                    ref_key: str | None = None, table_path: str | os.PathLike | None = None,
                    show_progress: bool = True) -> EvalResult:
    """WinRate of `policy` against `ref` on `prompts` under `judge`, and the policy's SingleScore.

    `policy` and `ref` are causal LMs (responses generated, and cached under `cache_dir` keyed by
    `policy_key` / `ref_key` or a weight hash) or lists of ready responses. Generations are made
    (and cached) before any judging, so a judge failure never loses them; when judging raises,
    the table is still written to `table_path` with verdict "not_judged".
    """
    params = params or EvalParams()
    prompts = _as_prompt_list(prompts)[:params.max_prompts]
    gen = gen_params_of(params)
    resp_pol = _responses(policy, tokenizer, prompts, gen, cache_dir, policy_key, show_progress)
    resp_ref = _responses(ref, tokenizer, prompts, gen, cache_dir, ref_key, show_progress)
    stats_before = judge.stats.as_dict()
    try:
        if isinstance(judge, ScoreJudge):  # one scoring pass each, verdicts from the scores
            s_pol, s_ref = judge.score(prompts, resp_pol), judge.score(prompts, resp_ref)
            verdicts = judge.verdicts_from_scores(s_pol, s_ref)
        else:
            verdicts = judge.compare(prompts, resp_pol, resp_ref)
            s_pol = judge.score(prompts, resp_pol) if params.single_score else None
            s_ref = None
    except BaseException:
        if table_path:
            write_parquet(per_prompt_table(prompts, resp_pol, resp_ref), table_path)
        raise
    table = per_prompt_table(prompts, resp_pol, resp_ref, verdicts, s_pol, s_ref)
    if table_path:
        write_parquet(table, table_path)
    nan_interval = Interval(float("nan"), float("nan"), float("nan"))
    return EvalResult(
        winrate=winrate(verdicts, params.n_bootstrap, params.seed),
        single_score=(single_score(s_pol, params.n_bootstrap, params.seed)
                      if s_pol is not None else nan_interval),
        table=table,
        judge_stats={k: v - stats_before[k] for k, v in judge.stats.as_dict().items()},
        counts={k: int((table["verdict"] == k).sum()) for k in ("win", "tie", "loss", "error")},
        table_path=Path(table_path) if table_path else None,
    )


def build_judge(params: EvalParams, reward_fn=None,
                cache_dir: str | os.PathLike | None = None) -> Judge:
    """The judge `params.judge` names. `reward_fn` overrides the world oracle; the LLM judge keeps
    its replies in `cache_dir/llm_judge_replies.jsonl` when `cache_dir` is given."""
    if params.judge == "oracle":
        if reward_fn is not None:
            return OracleJudge(reward_fn)
        try:
            return OracleJudge.from_world()
        except ImportError:
            raise TifkitError("The oracle judge needs tifkit.world.oracle_reward, which is not "
                              "importable; pass reward_fn= or use another judge.") from None
    if params.judge == "reward_model":
        if not params.reward_model:
            raise TifkitError("eval.judge is 'reward_model' but eval.reward_model is empty;"
                              " set eval.reward_model to a sequence-classification checkpoint path or hub id.")
        return RewardModelJudge(params.reward_model, trust_remote_code=params.trust_remote_code,
                                batch_size=params.batch_size)
    if params.judge == "llm":
        return LLMJudge(params.llm_base_url, params.llm_model, params.api_key_env,
                        timeout=params.timeout, max_retries=params.max_retries,
                        requests_per_minute=params.requests_per_minute,
                        concurrency=params.concurrency,
                        cache_path=Path(cache_dir) / "llm_judge_replies.jsonl" if cache_dir else None)
    raise TifkitError(f"Unknown judge {params.judge!r}; use 'oracle', 'reward_model' or 'llm'.")


def _set_label(name) -> str:
    text = str(name)
    return Path(text).stem if (os.sep in text or Path(text).suffix) else text


def evaluate_from_params(params: EvalParams, policy, ref, tokenizer,
                         out_dir: str | os.PathLike, *, world_prompts=None, reward_fn=None,
                         judge: Judge | None = None, cache_dir: str | os.PathLike | None = None,
                         policy_key: str | None = None, ref_key: str | None = None,
                         show_progress: bool = True) -> dict[str, EvalResult]:
    """Evaluate `policy` against `ref` on every set in `params.prompt_sets`.

    Writes `out_dir/eval_<set>.parquet` (per-prompt tables) and `out_dir/eval_summary.json` (removed
    first, written only when every set was judged, so a failed run never leaves an old one behind);
    generations are cached under `cache_dir` (default `out_dir/generations`). `world_prompts` are
    the world's test prompts (used by the "world" set); `judge` defaults to `build_judge(params,
    reward_fn, out_dir)`. Returns {set name: EvalResult}.
    """
    out_dir = Path(out_dir)
    cache_dir = Path(cache_dir) if cache_dir else out_dir / "generations"
    # a previous run's summary must not outlive a failed run: it is removed now, written at the end
    summary = out_dir / "eval_summary.json"
    if summary.exists():
        summary.unlink()
    judge = judge or build_judge(params, reward_fn, out_dir)
    results = {}
    for name in params.prompt_sets:
        prompts = load_prompt_set(name, world_prompts, params.max_prompts)
        label = _set_label(name)
        results[label] = evaluate_policy(policy, ref, tokenizer, prompts, judge, params, cache_dir,
                                         policy_key=policy_key, ref_key=ref_key,
                                         table_path=out_dir / f"eval_{label}.parquet",
                                         show_progress=show_progress)
    atomic_write_text(out_dir / "eval_summary.json",
                      json.dumps({k: r.summary() for k, r in results.items()}, indent=2))
    return results
