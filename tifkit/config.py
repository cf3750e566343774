"""Typed, validated run parameters loaded from ``params/*.yaml``.

A params file is a YAML mapping whose top-level keys are sections (``run``, ``world``, ``data``,
``model``, ``sft``, ``train``, ``score``, ``select``, ``eval``). Each section is a dataclass owned by
the module that uses it; this file only assembles and validates them. A file may start from another
with ``base: other.yaml`` (path relative to the file) and override only what differs, nanoGPT-style.

Every mistake a user can make gives one sentence naming the key and the file::

    params/x.yaml: unknown key 'train.lrr' (known: beta, lr, batch_size, ...).
    params/x.yaml: 'train.lr' must be a number, got 'fast' (str).
    Parameter file params/x.yaml does not exist (available: tiny.yaml, ...).
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
from tifkit.data import DataParams
from tifkit.evaluate import EvalParams
from tifkit.models import ModelParams
from tifkit.scores import ScoreParams
from tifkit.select import SelectParams
from tifkit.train import SFTParams, TrainParams
from tifkit.world import WorldConfig


@dataclass
class RunParams:
    """Section ``run:``."""

    name: str = "tiny"
    seed: int = 0
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])  # seeds of multi-seed reports (batch)
    root: str = "runs"  # run folders live under here, keyed by the parameters' content hash
    show_progress: bool = True
    # rules the batch trains and evaluates (each at select.keep)
    rules: list[str] = field(default_factory=lambda: ["full", "oracle", "random", "lossdiff-irm"])


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
        parent = _read_yaml((path.parent / base), seen + (path.resolve(),))
        data = _deep_merge(parent, data)
    return data


def _deep_merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def parse_overrides(items: list[str] | None) -> dict:
    """``["train.lr=1e-4", "model.family=qwen"]`` -> nested dict (values parsed as YAML)."""
    out: dict = {}
    for item in items or []:
        if "=" not in item:
            raise TifkitError(f"Override {item!r} must look like section.key=value (e.g. train.lr=1e-4).")
        key, raw = item.split("=", 1)
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = yaml.safe_load(raw)
    return out


def params_from_dict(data: dict, source: str = "<dict>") -> Params:
    try:
        p = _build(Params, data, "")
    except _Bad as e:
        raise TifkitError(f"{source}: {e.msg}.") from None
    p.source = source
    return p


def load_params(path: str | Path, overrides: dict | list[str] | None = None) -> Params:
    """Load, merge `overrides` (a nested dict or ``key=value`` strings) and validate a params file."""
    path = Path(path)
    data = _read_yaml(path)
    if isinstance(overrides, list):
        overrides = parse_overrides(overrides)
    if overrides:
        data = _deep_merge(data, overrides)
    return params_from_dict(data, str(path))


def dump_params(p: Params) -> str:
    return yaml.safe_dump(p.to_dict(), sort_keys=False)
