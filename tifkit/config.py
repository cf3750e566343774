"""Typed, validated run parameters loaded from ``params/*.yaml``.

A params file is a YAML mapping whose top-level keys are sections (``run``, ``world``, ``data``,
``model``, ``sft``, ``train``, ``score``, ``select``, ``eval``). Each section is a dataclass defined
here (the ground floor: this file imports no method module) and used by one module. A file may start from another
with ``base: other.yaml`` (path relative to the file) and override only what differs, nanoGPT-style.

Every mistake a user can make gives one sentence naming the key and the file::

    params/x.yaml: unknown key 'train.lrr' (known: objective, beta, lr, batch_size, ...).
    params/x.yaml: 'train.lr' must be a number, got 'fast' (str).
    Parameter file params/x.yaml does not exist (available in params: tiny.yaml, ...).
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from tifkit import TifkitError
from tifkit import rules as rule_registry  # standard library only (see `Rule`)

# ------------------------------------------------------------------------------ parameter sections
# Every section of a params file is one dataclass here, so that this module is the ground floor:
# it imports no method module, and each method module imports its section from here (the names
# stay importable from their modules too: ``tifkit.world.WorldConfig`` is this class).

class Rule(str):
    """The type of a rule-name field (`select.rule`, `run.rules`): a name or alias of the rule registry
    (tifkit.rules), stored under its registered name ("LossDiff-IRM" -> "lossdiff-irm"). tifkit.rules
    imports only the standard library; its first lookup imports tifkit.select, which registers the
    built-in rules, so this module still imports no method module at load time."""


# Upper limits of sizes that would otherwise run out of memory or generate for hours before failing
# (refused up front, naming the limit); the largest published contexts are well inside MAX_TOKENS.
MAX_BATCH = 4096
MAX_NEW_TOKENS = 32768
MAX_TOKENS = 1 << 21


def _check_range(key: str, value: int, lo: int, hi: int) -> None:
    if not lo <= value <= hi:
        raise ValueError(f"{key} is {value}, outside the allowed {lo}..{hi}; choose a value in that range")


# ---- world
@dataclass
class WorldConfig:
    """Parameters of the built-in world (section ``world:`` of a params file)."""

    alphabet: str = "abcdefghijklmnop"
    min_len: int = 3
    max_len: int = 8
    n_sft: int = 3000  # SFT demonstrations
    n_train: int = 2000  # D_tr pairs
    n_val: int = 200  # D_val pairs
    n_test: int = 300  # D_test prompts
    n_rm: int = 1000  # separate labelled pairs to train the reward-model baseline
    # generator strengths: probability that each position of the response is right
    strengths: list[float] = field(default_factory=lambda: [0.95, 0.8, 0.6, 0.4])
    p_append: float = 0.1  # chance a generator appends 1-2 junk letters
    p_drop: float = 0.1  # chance a generator drops one letter
    verbose_suffix: str = "!!"  # the sign-off a "verbose" writer adds; the oracle counts it as extra length
    p_verbose: float = 0.4  # chance a generated pair response carries the suffix
    sft_exact: float = 0.5  # fraction of SFT demonstrations whose letters are exactly right
    sft_verbose: float = 0.6  # fraction of SFT demonstrations with the suffix (greedy SFT inherits the habit)
    bt_temperature: float = 0.05  # Bradley-Terry temperature on the oracle gap
    flip_rate: float = 0.15  # fraction of D_tr (and reward-model) pairs mislabelled
    systematic: float = 0.8  # share of the flips drawn among "longer answer is worse" pairs ...
    bias_min_len: int = 6  # ... whose prompt has at least this many letters (the annotator's blind spot)
    val_flip_rate: float = 0.0  # label noise of D_val (a small, carefully labelled set by default)
    annotation_noise: float = 1.0  # std of the annotation score noise (1-10 scale)
    annotation_length_bonus: float = 1.0  # annotation points per extra letter (annotator bias)

    def __post_init__(self):
        if not self.alphabet or len(set(self.alphabet)) != len(self.alphabet) or not self.alphabet.isalpha():
            raise ValueError("world.alphabet must be distinct letters")
        if not 1 <= self.min_len <= self.max_len:
            raise ValueError("world.min_len must be >= 1 and <= world.max_len")
        for name in ("flip_rate", "systematic", "val_flip_rate", "p_append", "p_drop", "sft_exact", "p_verbose",
                     "sft_verbose"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"world.{name} must lie in [0, 1], got {v}")
        if not self.strengths or any(not 0.0 <= s <= 1.0 for s in self.strengths):
            raise ValueError("world.strengths must be a non-empty list of numbers in [0, 1]")


# ---- data
@dataclass
class DataParams:
    """Where the pairs come from and how they are cleaned (the ``data:`` section of params/*.yaml)."""

    source: Literal["world", "hub", "jsonl", "parquet"] = "world"
    path: str | None = None  # hub dataset id (or a saved datasets folder), or a local file
    split: str = "train_prefs"  # hub split
    hub_config: str | None = None  # hub dataset configuration name, if it has several
    on_bad_rows: Literal["drop", "error"] = "drop"
    # max tokens of prompt+chosen and of prompt+rejected (longer rows: too_long); needs a tokenizer.
    # None: the model's context length for data other than the world (the pipeline fills it in)
    max_tokens: int | None = None
    max_pairs: int | None = None  # keep a seeded random subset of this many clean pairs (original order)
    seed: int = 0
    id_column: str | None = None  # None: "pair_id", then "prompt_id", then a content hash
    columns: dict[str, str] = field(default_factory=dict)  # rename source columns, e.g. {"question": "prompt"}
    keep_columns: list[str] = field(default_factory=list)  # extra source columns to keep
    verbose: bool = True  # print the cleaning summary (it is always logged)
    # D_val for data other than the world: held out from the cleaned pairs by `seed`;
    # >= 1 is a count, < 1 a fraction
    val_size: float = 0.05

    def __post_init__(self):
        if self.max_tokens is not None:  # the model's own context is checked when it is loaded
            _check_range("data.max_tokens", self.max_tokens, 1, MAX_TOKENS)


# ---- models
@dataclass
class LoraParams:
    """LoRA adapters (peft). Off by default; on for the 8B families."""

    enabled: bool = False
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] | None = None  # None: peft's default for the architecture


@dataclass
class ModelParams:
    """Section ``model:`` of a params file."""

    family: str = "llama"  # a tiny family (llama, qwen, pythia, gpt2) or a free name for a real one
    name_or_path: str | None = None  # hub id or local path of a real checkpoint; None: tiny family
    tokenizer: str | None = None  # defaults to name_or_path
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = "float32"
    device: str = "auto"  # auto: cuda if available, else cpu
    trust_remote_code: bool = False
    revision: str | None = None
    # size of the tiny families
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    max_positions: int = 64
    lora: LoraParams = field(default_factory=LoraParams)

    @property
    def is_tiny(self) -> bool:
        return self.name_or_path is None


# ---- train
@dataclass
class SFTParams:
    """Section ``sft:`` (tiny families only; real families start from a given SFT checkpoint)."""

    steps: int = 400
    batch_size: int = 64
    lr: float = 3e-3
    warmup_steps: int = 30
    weight_decay: float = 0.0

    def __post_init__(self):
        _check_range("sft.batch_size", self.batch_size, 1, MAX_BATCH)


@dataclass
class TrainParams:
    """Section ``train:``: the DPO / SLiC stages."""

    objective: Literal["dpo", "slic"] = "dpo"
    beta: float = 0.3
    lr: float = 1e-4
    batch_size: int = 32
    grad_accum: int = 1
    warmup_epochs: float = 1.0  # warm-up stage on D_tr
    val_epochs: float = 1.0  # validation model on D_val
    continue_epochs: float = 2.0  # continuation on the selected subset
    val_start: Literal["warmup", "sft"] = "warmup"  # where the validation model starts (our decision)
    max_length: int | None = 128
    lr_scheduler: str = "constant"
    optimizer: str = "adamw_torch"
    precompute_ref_log_probs: bool = False
    logging_steps: int = 10

    def __post_init__(self):
        _check_range("train.batch_size", self.batch_size, 1, MAX_BATCH)
        _check_range("train.grad_accum", self.grad_accum, 1, MAX_BATCH)


# ---- scores
@dataclass
class ScoreParams:
    """Section ``score:``."""

    batch_size: int = 32
    reduction: Literal["sum", "mean"] = "sum"
    influence: Literal["batched", "loop", "projected", "none"] = "batched"
    project_dim: int | None = None
    project_seed: int = 0
    chunk_size: int = 512  # pairs per resumable shard
    # what IF measures (influence.py): val_loss = grad of the mean validation loss (the paper's IF);
    # val_margin = grad of the mean validation implicit-reward margin (no sigmoid(-h) weights on the
    # validation side); unweighted = margin gradients on both sides (no weights at all)
    if_measure: Literal["val_loss", "val_margin", "unweighted"] = "val_loss"
    # scoring precision: model = the models as loaded (model.dtype); float32 / bfloat16 cast copies
    # (bfloat16 keeps float32 log-softmax, g_val and IF accumulation)
    dtype: Literal["model", "float32", "bfloat16"] = "model"
    # memory the scoring run may use, GiB; None = the device's free memory (CUDA) or available RAM (CPU).
    # An estimate is printed before scoring; a run that will not fit stops with an error first
    memory_budget_gb: float | None = None
    # reward-model margin baseline: a sequence-classification checkpoint (path or hub id); with the
    # built-in world and no checkpoint, a tiny reward model is trained on the world's separate
    # labelled pairs (world.n_rm), never on the oracle
    reward_model: str | None = None
    rm_steps: int = 400
    max_length: int | None = None  # DPOConfig.max_length of training (TRL truncation); None: no truncation

    def __post_init__(self):
        _check_range("score.batch_size", self.batch_size, 1, MAX_BATCH)
        _check_range("score.chunk_size", self.chunk_size, 1, 10**9)


# ---- select
@dataclass
class SelectParams:
    """Parameters of the `select` section.

    rule: which selection rule to apply (see the module docstring).
    keep: fraction of pairs kept, in (0, 1]; the count is round(keep * n). Ignored by `full`.
    seed: seed of the `random` rule.
    band_center: centre (as a percentile in [0, 1]) of the bands of `tif`, `lossdiff`, `irm` and
        `lossdiff-irm`; 0.5 is the paper's middle band.
    tif_lo, tif_hi: explicit TIF percentile edges in [0, 1]. Both given: they win over `keep`.
        One given: the other is that edge plus/minus `keep`. Neither: a band of width `keep`
        centred at `band_center`.
    if_sign, lossdiff_sign, irm_sign: +1 or -1, multiplied into the score before ranking (flip
        when a score table uses the opposite sign convention; matters for top-if and for
        off-centre bands).
    top_if_largest: `top-if` keeps the largest (True) or smallest (False) signed IF.
    column: read this column instead of the rule's default one (single-score rules only), e.g. a
        second IF column computed with another projection.
    """

    rule: Rule = "lossdiff-irm"  # a name of the rule registry (tifkit.rules)
    keep: float = 0.64
    seed: int = 0
    band_center: float = 0.5
    tif_lo: float | None = None
    tif_hi: float | None = None
    if_sign: int = 1
    lossdiff_sign: int = 1
    irm_sign: int = 1
    top_if_largest: bool = True
    column: str | None = None


# ---- evaluate
@dataclass
class EvalParams:
    """The `evaluate` section of the parameters. Every field has a default."""

    judge: Literal["oracle", "reward_model", "llm"] = "oracle"
    reward_model: str = ""  # path or hub id of a sequence-classification checkpoint
    trust_remote_code: bool = False
    llm_base_url: str = "https://api.openai.com/v1"  # any OpenAI-compatible endpoint
    llm_model: str = "gpt-4o"
    api_key_env: str = "OPENAI_API_KEY"  # name of the env var holding the key ("" = no key)
    timeout: float = 60.0  # total deadline (seconds) of one judge request, however slowly the server replies
    max_retries: int = 5
    requests_per_minute: int = 60  # 0 = no limit
    concurrency: int = 4  # judge requests in flight at once
    prompt_sets: list[str] = field(default_factory=lambda: ["world"])  # names or JSONL paths
    max_new_tokens: int = 128
    do_sample: bool = False  # greedy unless set
    temperature: float = 1.0
    top_p: float = 1.0
    batch_size: int = 16
    chat_template: Literal["auto", "on", "off"] = "auto"  # auto: when the tokenizer has one
    single_score: bool = True  # also score the policy's responses alone (extra calls for LLM)
    n_bootstrap: int = 1000
    seed: int = 0
    max_prompts: int | None = None  # the first N prompts of each set

    def __post_init__(self):
        _check_range("eval.batch_size", self.batch_size, 1, MAX_BATCH)
        _check_range("eval.max_new_tokens", self.max_new_tokens, 1, MAX_NEW_TOKENS)




@dataclass
class RunParams:
    """Section ``run:``."""

    name: str = "tiny"
    seed: int = 0
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])  # seeds of multi-seed reports (batch)
    # seeds of the notebooks' own studies at full scale (IF groups, band sweep, SLiC, families, decisions:
    # models the batch does not train); None = `seeds`. The batch's headline comparisons use `seeds`.
    study_seeds: list[int] | None = None
    # initialization/training seed (model init, SFT and DPO batch order, reward model), apart from the
    # world/data seed (`seed`, `seeds`); None = the world seed (run folders then keep their old hash)
    model_seed: int | None = None
    # worker processes of the batch (one torch thread each; seeds and rules in parallel); 0 = one per CPU core
    # (on one GPU, 1 keeps a single process on the device)
    workers: int = 0
    # hierarchical bootstrap replicates (seeds, then prompts) behind every interval the batch reports
    n_bootstrap: int = 10000
    root: str = "runs"  # run folders live under here, keyed by the parameters' content hash
    show_progress: bool = True
    # rules the batch trains and evaluates (each at select.keep)
    rules: list[Rule] = field(default_factory=lambda: ["full", "oracle", "random", "lossdiff-irm"])


@dataclass
class Params:
    run: RunParams = field(default_factory=RunParams)
    world: WorldConfig = field(default_factory=WorldConfig)
    data: DataParams = field(default_factory=DataParams)
    model: ModelParams = field(default_factory=ModelParams)
    sft: SFTParams = field(default_factory=SFTParams)
    train: TrainParams = field(default_factory=TrainParams)
    score: ScoreParams = field(default_factory=ScoreParams)
    select: SelectParams = field(default_factory=SelectParams)
    eval: EvalParams = field(default_factory=EvalParams)
    source: str | None = field(default=None, metadata={"internal": True})  # the file it came from

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("source", None)
        return d


# ------------------------------------------------------------------------------------ validation
_TYPE_WORDS = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _describe(tp) -> str:
    origin = typing.get_origin(tp)
    if tp in _TYPE_WORDS:
        return _TYPE_WORDS[tp]
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if tp is Rule:
        return "a selection rule"
    if origin in (list, tuple):
        return "a list"
    if origin is dict:
        return "a mapping"
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _describe(a) for a in typing.get_args(tp))
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return str(tp)


class _Bad(Exception):
    def __init__(self, key: str, msg: str):
        super().__init__(msg)
        self.key, self.msg = key, msg


def _coerce(value: Any, tp, key: str):
    """Check `value` against the annotation `tp`; return the converted value or raise _Bad."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except _Bad:
                pass
        raise _Bad(key, f"'{key}' must be {_describe(tp)}, got {value!r} ({type(value).__name__})")
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise _Bad(key, f"'{key}' must be {_describe(tp)}, got {value!r}")
    if tp is Rule:
        spec = rule_registry.find_rule(value) if isinstance(value, str) else None
        if spec is None:
            raise _Bad(key, f"'{key}' must be one of {', '.join(map(repr, rule_registry.rule_names()))}, got {value!r}")
        return spec.name
    if origin is list:
        if not isinstance(value, list):
            raise _Bad(key, f"'{key}' must be a list, got {value!r} ({type(value).__name__})")
        (item,) = typing.get_args(tp) or (Any,)
        return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise _Bad(key, f"'{key}' must be a mapping, got {value!r} ({type(value).__name__})")
        _, vt = typing.get_args(tp) or (Any, Any)
        return {str(k): _coerce(v, vt, f"{key}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML reads 1e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    raise _Bad(key, f"'{key}' must be {_describe(tp)}, got {value!r} ({type(value).__name__})")


def _build(cls, data: Any, prefix: str):
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise _Bad(prefix, f"'{prefix}' must be a mapping of keys to values, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    kwargs = {}
    for k, v in data.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if k not in fields:
            raise _Bad(key, f"unknown key '{key}' (known: {', '.join(fields)})")
        kwargs[k] = _coerce(v, hints[k], key)
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:  # a section's own __post_init__ check
        raise _Bad(prefix, f"section '{prefix}': {e}") from None


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    if not path.is_file():
        avail = sorted(p.name for p in path.parent.glob("*.yaml")) if path.parent.is_dir() else []
        hint = f" (available in {path.parent}: {', '.join(avail)})" if avail else ""
        raise TifkitError(f"Parameter file {path} does not exist{hint}.")
    if path.resolve() in seen:
        raise TifkitError(f"{path}: 'base' files form a cycle ({' -> '.join(str(p) for p in seen)}).")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise TifkitError(f"{path}: not valid YAML{where}: {getattr(e, 'problem', e)}.") from None
    if not isinstance(data, dict):
        raise TifkitError(f"{path}: the top level must be a mapping of sections (run, world, model, ...).")
    base = data.pop("base", None)
    if base is not None:
        if not isinstance(base, str):
            raise TifkitError(f"{path}: 'base' must be the path of another params file, got {base!r}.")
        base_path = path.parent / base
        if not base_path.is_file():  # a params file outside params/ may start from a packaged one
            shipped = _packaged_file(base)
            if shipped is None:
                avail = ", ".join(_packaged_names())
                raise TifkitError(f"{path}: base file {base_path} does not exist, and {base!r} is not a params file "
                                  f"shipped with tifkit ({avail}); fix 'base'.")
            base_path = shipped
        parent = _read_yaml(base_path, seen + (path.resolve(),))
        data = _deep_merge(parent, data)
    return data


def _deep_merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def parse_overrides(items: list[str] | None) -> dict:
    """``["train.lr=1e-4", "model.family=qwen"]`` -> nested dict (values parsed as YAML).
    A malformed item is a TifkitError naming that ``--set``."""
    out: dict = {}
    for item in items or []:
        if "=" not in item:
            raise TifkitError(f"--set {item!r} must look like section.key=value (e.g. --set train.lr=1e-4).")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise TifkitError(f"--set {item!r}: {key.strip()!r} is not a section.key name (e.g. --set train.lr=1e-4).")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            problem = getattr(e, "problem", None) or type(e).__name__
            raise TifkitError(f"--set {item!r}: the value is not valid YAML ({problem}); quote it or close its "
                              "brackets, e.g. --set 'select.keep=0.5' or --set 'run.seeds=[0, 1]'.") from None
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise TifkitError(f"--set {item!r} conflicts with an earlier --set of {p!r}; give each key once.")
        node[parts[-1]] = value
    return out


def _blame(bad_key: str, items: list[str]) -> str | None:
    """The --set item that set `bad_key` (or a key inside it, or the section it checks), if any."""
    for item in reversed(items):
        k = item.split("=", 1)[0].strip()
        if bad_key == k or bad_key.startswith((k + ".", k + "[")) or (bad_key and k.startswith(bad_key + ".")):
            return item
    return None


def params_from_dict(data: dict, source: str = "<dict>") -> Params:
    try:
        p = _build(Params, data, "")
    except _Bad as e:
        raise TifkitError(f"{source}: {e.msg}.") from None
    p.source = source
    return p


def packaged_params() -> Path:
    """The folder of the params files shipped inside the package (``tifkit.params``: the repository's
    params/ folder, installed with the package by pyproject's package-dir mapping)."""
    from importlib import resources

    return Path(str(resources.files("tifkit.params")))


def _packaged_file(name: str | Path) -> Path | None:
    """The packaged params file `name` ("tiny.yaml" or "params/tiny.yaml"), or None."""
    name = Path(name)
    if not (len(name.parts) == 1 or (len(name.parts) == 2 and name.parts[0] == "params")):
        return None
    try:
        shipped = packaged_params() / name.name
    except ModuleNotFoundError:  # pragma: no cover - a source tree without the package mapping
        return None
    return shipped if shipped.is_file() else None


def _packaged_names() -> list[str]:
    try:
        return sorted(p.name for p in packaged_params().glob("*.yaml"))
    except ModuleNotFoundError:  # pragma: no cover
        return []


def resolve_params_file(path: str | Path) -> Path:
    """`path` when it exists; else the packaged params file of the same name; else `path` (whose
    loading then says it does not exist and lists the packaged files)."""
    path = Path(path)
    if path.is_file():
        return path
    try:
        shipped = packaged_params() / path.name
    except ModuleNotFoundError:  # pragma: no cover - a source tree without the package mapping
        return path
    if shipped.is_file() and (len(path.parts) == 1 or path.parent.name == "params"):
        return shipped
    return path


def load_params(path: str | Path, overrides: dict | list[str] | None = None) -> Params:
    """Load, merge `overrides` (a nested dict or ``key=value`` strings) and validate a params file.

    `path` is a file, or the name of a params file shipped with tifkit ("tiny.yaml",
    "params/tiny-qwen.yaml"), so notebooks and scripts work from any folder wherever tifkit is
    installed (see `packaged_params`)."""
    path = resolve_params_file(path)
    data = _read_yaml(path)
    items = list(overrides) if isinstance(overrides, list) else []
    if isinstance(overrides, list):
        overrides = parse_overrides(overrides)
    if overrides:
        data = _deep_merge(data, overrides)
    try:
        p = _build(Params, data, "")
    except _Bad as e:  # blame the --set that gave the bad value, else the file
        item = _blame(e.key, items)
        raise TifkitError(f"{f'--set {item}' if item else path}: {e.msg}.") from None
    p.source = str(path)
    return p


def dump_params(p: Params) -> str:
    return yaml.safe_dump(p.to_dict(), sort_keys=False)
