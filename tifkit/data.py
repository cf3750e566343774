"""Preference pairs in, cleaned, as one pandas DataFrame; and back out in the format TRL loads.

Sources (``DataParams.source``): the built-in world (a DataFrame passed as ``frame``), a hub dataset
id (UltraFeedback-binarized form, via ``datasets.load_dataset``; a folder written by ``save_pairs`` or
``Dataset.save_to_disk`` also works), a local JSONL file, or a local Parquet file.

Output table (the pair-table convention of docs/ARCHITECTURE.md), in this column order:

    pair_id         str, unique. From ``id_column`` if set, else a ``pair_id`` or ``prompt_id`` column,
                    else a 12-hex content hash of (prompt, chosen, rejected) as read.
    prompt          str, or a list of chat messages ``{"role", "content"}``
    chosen          str, or a list of messages (the final assistant turn(s))
    rejected        str, or a list of messages
    score_chosen    float, optional (annotation scores, only if the source has them)
    score_rejected  float, optional
    keep_columns    any extra columns named in ``DataParams.keep_columns``
    gt_*            ground truth (world only), passed through untouched

Conversational rows are kept in TRL's explicit-prompt conversational format. Where ``chosen`` and
``rejected`` are full conversations and ``prompt`` is missing or a plain string (UltraFeedback's
layout), the prompt becomes their longest common message prefix and chosen/rejected the remainders,
exactly as ``trl.maybe_extract_prompt`` does; if there is no common prefix, the string prompt becomes
one user message. A table is either all strings or all conversational (TRL looks at the first row
only); rows in the other format are dropped as ``non_text``.

Every other input column is dropped, so TRL's DPOTrainer sees only what it should.

A file that cannot be read as pairs (missing, a folder, empty, binary, not UTF-8, invalid JSON, not
JSON objects, unreadable Parquet, an extension that names no format, a missing column) is one
``TifkitError`` sentence naming the file; ``preflight`` runs every such check and the row checks
without a tokenizer, so the CLI can fail before loading a model. ``data.path`` without
``data.source`` takes the source its extension names (``resolve_source``), never the world.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import numbers
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from tifkit import TifkitError
from tifkit.config import DataParams  # noqa: F401  (parameter section; lives in config.py)
from tifkit.io import (atomic_path, content_hash, is_tifkit_output, publish_folder, recover_folder, stage_lock,
                       sweep_temps, tmp_prefix)

log = logging.getLogger(__name__)

REQUIRED = ("prompt", "chosen", "rejected")
SCORES = ("score_chosen", "score_rejected")
REASONS = ("missing_field", "non_text", "empty_response", "identical_responses", "duplicate_id", "duplicate_row",
           "too_long")


@dataclass
class CleanReport:
    """What cleaning did: pairs read, pairs kept, and pairs dropped by reason (see ``REASONS``)."""

    n_in: int
    n_out: int
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    n_clean: int | None = None  # pairs left after cleaning, before ``max_pairs`` (None: same as n_out)
    source: str = ""
    limit: str = ""  # what too_long measured against, e.g. "64 tokens, the context of model tiny-sft"
    rows: dict[str, list[int]] = field(default_factory=dict)  # reason -> 0-based row numbers of the file, in order
    ids: dict[int, str] = field(default_factory=dict)  # dropped row number -> its pair_id ("" when it had none)

    def summary(self) -> str:
        """One line, e.g. ``data: 100 pairs in, 93 kept; dropped 3 identical_responses, 4 too_long``
        (too_long names its limit: ``4 too_long (over 64 tokens, the context of model tiny-sft)``)."""
        bad = ", ".join(f"{n} {r}" + (f" (over {self.limit})" if r == "too_long" and self.limit else "")
                        for r, n in self.dropped.items() if n)
        sub = f" ({self.n_clean} clean, subsampled by max_pairs)" if self.n_clean not in (None, self.n_out) else ""
        where = f" from {self.source}" if self.source else ""
        return f"data: {self.n_in} pairs in{where}, {self.n_out} kept{sub}; dropped {bad or 'none'}"


# ----------------------------------------------------------------------------------------- readers


EXT_SOURCES = {".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}


def _is_saved_dataset(path: Path) -> bool:
    return path.is_dir() and ((path / "state.json").exists() or (path / "dataset_dict.json").exists())


def _looks_local(path: str | os.PathLike) -> bool:
    """A path the user means as a local file or folder (not a hub id)."""
    s = str(path)
    return s.startswith((".", "/", "~")) or Path(s).expanduser().exists()


def source_for_path(path: str | os.PathLike) -> str:
    """The data source a file's extension names: .jsonl/.json (optionally .gz) -> jsonl, .parquet ->
    parquet, a saved ``datasets`` folder -> hub; anything else is a TifkitError."""
    p = Path(path).expanduser()
    suffix = p.suffix.lower()
    if suffix == ".gz" and Path(p.stem).suffix.lower() in (".jsonl", ".json"):
        return "jsonl"  # gzip-compressed JSON lines: read through gzip
    if suffix == ".gz":
        raise TifkitError(f"Data file {str(path)!r} is gzip-compressed but not named .jsonl.gz or .json.gz: tifkit "
                          "reads compressed JSON lines only; decompress it (gunzip) or rename it.")
    if suffix in EXT_SOURCES:
        return EXT_SOURCES[suffix]
    if p.is_dir():
        if _is_saved_dataset(p):
            return "hub"  # a folder written by save_pairs / Dataset.save_to_disk
        raise TifkitError(f"--data {str(path)!r} is a folder but not a saved datasets folder (no state.json or "
                          "dataset_dict.json): point --data at the .jsonl or .parquet file inside it.")
    raise TifkitError(f"Cannot tell the format of data file {str(path)!r} from its name: give a .jsonl file (one JSON "
                      "object per line, optionally .jsonl.gz) or a .parquet file, or set data.source (jsonl, parquet "
                      "or hub).")


def resolve_source(params: DataParams) -> DataParams:
    """`data.path` without `data.source` (still 'world'): the source the path's extension names.
    (Never the built-in world with a path silently ignored.)"""
    if params.source == "world" and params.path:
        return dataclasses.replace(params, source=source_for_path(params.path))
    return params


def _read_text(path: Path) -> str:
    """The file as UTF-8 text; empty, binary and non-UTF-8 files each get their own sentence."""
    data = path.read_bytes()
    if path.name.lower().endswith(".gz"):
        import gzip
        import zlib

        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as err:
            raise TifkitError(f"Data file {path} is named .gz but is not a complete gzip file ({type(err).__name__}): "
                              "compress it again with gzip, or drop the .gz from its name.") from None
    if not data.strip():
        raise TifkitError(f"Data file {path} is empty: give a JSONL file with one {{prompt, chosen, rejected}} "
                          "object per line.")
    if b"\x00" in data[:8192]:
        raise TifkitError(f"Data file {path} is binary, not JSON lines: give a UTF-8 JSONL file (or a .parquet file "
                          "named .parquet).")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise TifkitError(f"Data file {path} is not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start}): "
                          "re-save it as UTF-8.") from None


def _read_jsonl(path: Path) -> pd.DataFrame:
    text = _read_text(path)
    records = None
    if text.lstrip().startswith("["):  # a plain JSON array of records is accepted too
        try:
            records = json.loads(text)
        except json.JSONDecodeError as err:
            first = text.lstrip().splitlines()[0]
            try:
                json.loads(first)  # a JSONL file whose lines are arrays: reported below, record by record
            except json.JSONDecodeError:
                raise TifkitError(f"{path} starts like a JSON array but is not valid JSON ({err.msg} at line "
                                  f"{err.lineno}); fix it or write one JSON object per line.") from None
    if records is None:
        records = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise TifkitError(f"Line {lineno} of {path} is not valid JSON ({err.msg}); fix or remove it "
                                      "(a file cut short ends in such a line).") from None
    bad = next((i for i, r in enumerate(records if isinstance(records, list) else [records]) if not isinstance(r, dict)),
               None)
    if not isinstance(records, list) or bad is not None:
        raise TifkitError(f"Record {1 + (bad or 0)} of {path} is not a JSON object: write one "
                          "{\"prompt\": ..., \"chosen\": ..., \"rejected\": ...} object per line.")
    return pd.DataFrame.from_records(records)


def _read_parquet(path: Path) -> pd.DataFrame:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as err:  # noqa: BLE001 - not Parquet, truncated, damaged: one sentence
        raise TifkitError(f"Data file {path} is not a readable Parquet file ({type(err).__name__}); write it again, "
                          "or name a JSONL file .jsonl.") from None
    return pd.DataFrame.from_records(table.to_pylist())


def _read_hub(params: DataParams) -> pd.DataFrame:
    import datasets

    local = Path(params.path).expanduser()
    if _looks_local(params.path) and not _is_saved_dataset(local):
        what = "does not exist" if not local.exists() else "is not a saved datasets folder (no state.json)"
        raise TifkitError(f"data.path {params.path!r} {what}: with data.source 'hub' give a hub dataset id or a "
                          "folder written by Dataset.save_to_disk; for a local file use data.source jsonl or parquet.")
    if _is_saved_dataset(local):
        ds = datasets.load_from_disk(str(local))  # a folder written by save_pairs / save_to_disk
        if isinstance(ds, datasets.DatasetDict):
            ds = ds[params.split]
        return pd.DataFrame.from_records(ds.to_list())
    try:
        ds = datasets.load_dataset(params.path, params.hub_config, split=params.split)
    except Exception as err:
        raise TifkitError(
            f"Hub dataset {params.path!r} (split {params.split!r}) could not be loaded ({type(err).__name__}): "
            "download it and set data.source to 'jsonl' or 'parquet' with data.path pointing at the local file, "
            "or log in (`hf auth login`) and set HF_HUB_OFFLINE=0."
        ) from err
    return pd.DataFrame.from_records(ds.to_list())


def _read(params: DataParams, frame: pd.DataFrame | None) -> tuple[pd.DataFrame, str]:
    """Return the raw table and a short description of where it came from."""
    if params.source == "world":
        if frame is None:
            raise TifkitError("data.source is 'world' but no pairs were given: pass frame=<the world's pairs>.")
        return frame, "the world"
    if frame is not None:
        raise TifkitError(f"A frame was passed but data.source is {params.source!r}: set data.source to 'world'.")
    if not params.path:
        raise TifkitError(f"data.source is {params.source!r} but data.path is empty: set data.path.")
    if params.source == "hub":
        return _read_hub(params), params.path
    path = Path(params.path).expanduser()
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise TifkitError(f"Data file {str(path)!r} {what}: point data.path (--data) at a {params.source} file.")
    raw = _read_jsonl(path) if params.source == "jsonl" else _read_parquet(path)
    if len(raw) == 0:
        raise TifkitError(f"Data file {path} has no rows: give at least a few preference pairs.")
    return raw, str(path)


def preflight(params: DataParams) -> None:
    """Read a local data file and check its columns, without a tokenizer or a model: the CLI calls it
    before anything expensive, so that a bad file fails in a second with a sentence naming it."""
    params = resolve_source(params)
    if params.source not in ("jsonl", "parquet"):
        return
    # reading, columns and every row check but the token count (that one needs the model's tokenizer)
    load_pairs(dataclasses.replace(params, max_tokens=None, verbose=False), tokenizer=None)


# ----------------------------------------------------------------------------------------- cleaning


def _plain(value: Any) -> Any:
    """numpy arrays (from Parquet / pandas) -> lists, recursively; everything else unchanged."""
    if isinstance(value, (np.ndarray, list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _is_missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _is_messages(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) > 0
        and all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in value)
        and all(isinstance(m.get("content"), str) for m in value)
    )


def _is_empty(response: Any) -> bool:
    if isinstance(response, str):
        return not response.strip()
    return not response or all(not m["content"].strip() for m in response)


def _normalize(prompt: Any, chosen: Any, rejected: Any) -> tuple[str, tuple]:
    """Return (reason or "", (prompt, chosen, rejected) in TRL format). Checks run in REASONS order."""
    if _is_missing(chosen) or _is_missing(rejected):
        return "missing_field", ()
    if isinstance(chosen, str) and isinstance(rejected, str) and _is_messages(prompt):
        # a chat prompt with plain-string answers: each answer is one assistant turn
        chosen, rejected = [{"role": "assistant", "content": chosen}], [{"role": "assistant", "content": rejected}]
    if isinstance(chosen, str) and isinstance(rejected, str):
        if _is_missing(prompt):
            return "missing_field", ()
        if not isinstance(prompt, str):
            return "non_text", ()
    elif _is_messages(chosen) and _is_messages(rejected):
        if _is_messages(prompt):
            pass  # already explicit-prompt conversational
        elif _is_missing(prompt) or isinstance(prompt, str):
            k = 0  # longest common message prefix, leaving at least one message, as trl.extract_prompt
            while k < min(len(chosen), len(rejected)) - 1 and chosen[k] == rejected[k]:
                k += 1
            if k == 0 and isinstance(prompt, str) and prompt.strip():
                prompt = [{"role": "user", "content": prompt}]
            elif k == 0:
                return "missing_field", ()
            else:
                prompt, chosen, rejected = chosen[:k], chosen[k:], rejected[k:]
        else:
            return "non_text", ()
    else:
        return "non_text", ()
    if _is_empty(chosen) or _is_empty(rejected):
        return "empty_response", ()
    if chosen == rejected:
        return "identical_responses", ()
    return "", (prompt, chosen, rejected)


def _as_id(value: Any) -> str | None:
    if _is_missing(value):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _token_lengths(tokenizer, prompts: list, responses: list) -> list[int]:
    """Tokens of prompt+response as TRL's DPOTrainer builds them (EOS appended to string responses;
    chat template for messages; without a chat template, message contents joined by newlines)."""
    eos = tokenizer.eos_token or ""
    template = getattr(tokenizer, "chat_template", None)
    out: list[int] = []
    step = 1024
    for s in tqdm(range(0, len(prompts), step), desc="counting tokens", disable=len(prompts) <= 4 * step):
        chunk = list(zip(prompts[s : s + step], responses[s : s + step]))
        if chunk and not isinstance(chunk[0][0], str) and template:
            render = lambda msgs: tokenizer.apply_chat_template(msgs, tokenize=True, return_dict=True)  # noqa: E731
            out += [len(render(p + r)["input_ids"]) for p, r in chunk]
            continue
        texts = [
            p + (r if r.endswith(eos) else r + eos) if isinstance(p, str) else "\n".join(m["content"] for m in p + r)
            for p, r in chunk
        ]
        out += [len(ids) for ids in tokenizer(texts)["input_ids"]] if texts else []
    return out


def _clean(raw: pd.DataFrame, params: DataParams, tokenizer, where: str) -> tuple[list[str], list[str], list[tuple]]:
    """Return per row: its pair_id, its drop reason ("" = keep), and its normalized (prompt, chosen, rejected)."""
    n = len(raw)
    col = lambda name: [_plain(v) for v in raw[name].tolist()] if name in raw.columns else [None] * n  # noqa: E731
    prompts, chosens, rejecteds = col("prompt"), col("chosen"), col("rejected")
    reasons, rows = [], []
    for p, c, r in zip(prompts, chosens, rejecteds):
        reason, row = _normalize(p, c, r)
        reasons.append(reason)
        rows.append(row)
    for name in SCORES:  # annotation scores must be numbers (or missing)
        for i, v in enumerate(col(name)):
            if not reasons[i] and not _is_missing(v) and (isinstance(v, bool) or not isinstance(v, numbers.Real)):
                reasons[i] = "non_text"

    # A table is all strings or all conversational (TRL looks at the first row): the first good row decides.
    good = [i for i in range(n) if not reasons[i]]
    if good:
        text_table = isinstance(rows[good[0]][1], str)
        for i in good:
            if isinstance(rows[i][1], str) != text_table:
                reasons[i] = "non_text"

    id_col = params.id_column or next((c for c in ("pair_id", "prompt_id") if c in raw.columns), None)
    if id_col is not None and id_col not in raw.columns:
        raise TifkitError(
            f"data.id_column {id_col!r} is not a column of {where}: set data.id_column to one of {list(raw.columns)}."
        )
    if id_col:
        ids = [_as_id(v) for v in raw[id_col].tolist()]
    else:
        ids = [content_hash([p, c, r]) for p, c, r in zip(prompts, chosens, rejecteds)]
    seen: set[str] = set()
    for i in range(n):
        if not reasons[i] and ids[i] is None:
            reasons[i] = "missing_field"
        elif not reasons[i]:
            # without an id column a pair's id is its content: a repeat is the same row again
            reasons[i] = ("duplicate_id" if id_col else "duplicate_row") if ids[i] in seen else ""
            seen.add(ids[i])

    if params.max_tokens is not None:
        if tokenizer is None:
            raise TifkitError(
                "data.max_tokens is set but no tokenizer was given: pass tokenizer= or set data.max_tokens to null."
            )
        good = [i for i in range(n) if not reasons[i]]
        ps = [rows[i][0] for i in good]
        lens = zip(_token_lengths(tokenizer, ps, [rows[i][1] for i in good]),
                   _token_lengths(tokenizer, ps, [rows[i][2] for i in good]))
        for i, (lc, lr) in zip(good, lens):
            if max(lc, lr) > params.max_tokens:
                reasons[i] = "too_long"
    return [pid if pid is not None else f"row {k}" for k, pid in enumerate(ids)], reasons, rows


# what to do when every row was dropped, by the reason that dropped most of them
_ALL_DROPPED_FIX = {
    "missing_field": "rows lack a prompt, chosen or rejected value; map your column names with data.columns "
                     "(e.g. --set 'data.columns={question: prompt}')",
    "non_text": "fields are neither strings nor chat message lists of {role, content}, scores are not numbers, "
                "or rows mix plain strings and chat messages; write every row in one of the two formats",
    "empty_response": "the chosen or rejected responses are empty; fill them in",
    "identical_responses": "chosen and rejected are the same text, so there is no preference to learn; "
                           "check how the file was built",
    "duplicate_id": "the ids repeat; set data.id_column to a unique column (or remove the id column)",
    "duplicate_row": "the same prompt, chosen and rejected appear more than once; only the first of each is kept",
}


def _limit_text(max_tokens: int, context: str) -> str:
    return f"{max_tokens} tokens, {context}" if context else f"{max_tokens} tokens, data.max_tokens"


def load_pairs(
    params: DataParams, tokenizer=None, frame: pd.DataFrame | None = None, context: str = ""
) -> tuple[pd.DataFrame, CleanReport]:
    """Read the pairs ``params`` names (``frame`` when ``params.source == "world"``), clean them, and
    return the pair table (columns: see the module docstring) and a ``CleanReport``.

    A row is bad for the first of these reasons that applies: ``missing_field`` (prompt/chosen/rejected
    or id empty), ``non_text`` (not a string, not a valid message list, a non-numeric score, or the
    other format than the table's), ``empty_response``, ``identical_responses``, ``duplicate_id``
    (later rows with an id already seen), ``duplicate_row`` (without an id column: a later row equal to an
    earlier one), ``too_long`` (prompt+chosen or prompt+rejected over
    ``max_tokens`` tokens of ``tokenizer``). ``on_bad_rows="drop"`` drops and counts them;
    ``"error"`` raises ``TifkitError`` at the first one. ``context`` says where ``max_tokens`` came
    from (e.g. "the context of model tiny-sft"); every too_long message names it with the limit.
    """
    raw, where = _read(params, frame)
    raw = raw.rename(columns=params.columns)
    for name in ("chosen", "rejected", *params.keep_columns):
        if name not in raw.columns:
            raise TifkitError(f"Column {name!r} is missing from {where}: add it or map it with data.columns.")
    ids, reasons, rows = _clean(raw, params, tokenizer, where)
    first = next((r for r, why in zip(rows, reasons) if not why), None)
    if first is not None and not isinstance(first[1], str) and tokenizer is not None \
            and not getattr(tokenizer, "chat_template", None):
        raise TifkitError(f"{where} holds chat messages but the tokenizer has no chat template: use a model whose "
                          "tokenizer has one (or set model.tokenizer), or write the pairs as plain prompt/chosen/"
                          "rejected strings.")
    if "prompt" not in raw.columns and not any(r and not isinstance(r[0], str) for r in rows):
        raise TifkitError(f"Column 'prompt' is missing from {where}: add it or map it with data.columns.")

    n = len(raw)
    limit = _limit_text(params.max_tokens, context) if params.max_tokens is not None else ""
    report = CleanReport(n_in=n, n_out=0, source=where, limit=limit)
    for i, reason in enumerate(reasons):
        if not reason:
            continue
        if params.on_bad_rows == "error":
            fix = (f"it is longer than {limit}; shorten it, use a model with a longer context" if reason == "too_long"
                   else "fix the row")
            raise TifkitError(
                f"Row {i} (pair_id {ids[i]!r}) of {where} is bad ({reason}): {fix} or set data.on_bad_rows to 'drop'."
            )
        report.dropped[reason] += 1
        report.rows.setdefault(reason, []).append(i)
        report.ids[i] = "" if ids[i] is None else str(ids[i])
    keep = [i for i in range(n) if not reasons[i]]
    if not keep:
        worst = max(report.dropped, key=report.dropped.get)
        fix = (f"every remaining row is longer than {limit}; use a model with a longer context (the tiny "
               "export-tiny model has 64 positions and is only for trying the commands) or shorter pairs"
               if worst == "too_long" else _ALL_DROPPED_FIX[worst])
        raise TifkitError(f"No pairs left after cleaning {where} ({report.summary()}): {fix}.")

    gt = [c for c in raw.columns if str(c).startswith("gt_")]
    extra = [c for c in (*SCORES, *params.keep_columns) if c in raw.columns and c not in gt]
    out = raw.iloc[keep][extra + gt].reset_index(drop=True)
    for name in SCORES:
        if name in out.columns:
            out[name] = pd.to_numeric(out[name], errors="coerce").astype(float)
    out.insert(0, "pair_id", pd.Series([ids[i] for i in keep], dtype=object))
    for j, name in enumerate(REQUIRED):
        out.insert(j + 1, name, pd.Series([rows[i][j] for i in keep], dtype=object))

    report.n_clean = len(out)
    if params.max_pairs is not None and len(out) > params.max_pairs:
        picked = np.sort(np.random.default_rng(params.seed).choice(len(out), params.max_pairs, replace=False))
        out = out.iloc[picked].reset_index(drop=True)
    report.n_out = len(out)
    log.info(report.summary())
    if params.verbose:
        print(report.summary())
    return out, report


# ----------------------------------------------------------------------------------------- writers


def to_trl_dataset(df: pd.DataFrame):
    """The pair table as a ``datasets.Dataset`` that TRL's DPOTrainer takes as ``train_dataset``."""
    import datasets

    return datasets.Dataset.from_pandas(df, preserve_index=False)


OUTPUT_FORMATS = {".jsonl": "jsonl", ".json": "json", ".parquet": "parquet"}


def output_format(path: str | os.PathLike) -> str:
    """jsonl (``.jsonl``), json (``.json``: one JSON array), parquet (``.parquet``) or dataset (a
    folder: any name without one of those extensions)."""
    return OUTPUT_FORMATS.get(Path(path).suffix.lower(), "dataset")


def check_output(path: str | os.PathLike, inputs: tuple = (), force: bool = False) -> Path:
    """Refuse, before any work, an output path whose writing would destroy a file of the user's:
    an input file (or a folder holding one), an existing folder that tifkit did not write (it is never
    replaced), an existing file unless ``force``, a folder name that is an existing file, a folder
    that cannot be written. Returns the path."""
    path = Path(path).expanduser()
    recover_folder(path)  # a replacement a kill interrupted: put the previous folder back first
    target = path.resolve()
    for inp in inputs:
        if not inp:
            continue
        src = Path(inp).expanduser().resolve()
        if src == target or target in src.parents:
            raise TifkitError(f"-o {path} would overwrite the input data {inp}: write the selection to a new name.")
    fmt = output_format(path)
    if fmt == "dataset":
        if path.exists() and not path.is_dir():
            raise TifkitError(f"-o {path} is an existing file, and a name without .jsonl, .json or .parquet writes a "
                              "datasets folder: give a new folder name, or a file name with one of those extensions.")
        if path.is_dir() and any(path.iterdir()) and not is_tifkit_output(path):
            raise TifkitError(f"-o {path} is a folder with files tifkit did not write, and tifkit never replaces such a "
                              "folder: give a new or empty folder name.")
    elif path.is_dir():
        raise TifkitError(f"-o {path} is an existing folder; give a file name or remove the folder.")
    elif path.exists() and not force:
        raise TifkitError(f"-o {path} exists: add --force to replace it, or give a new file name.")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not os.access(parent, os.W_OK):
        raise TifkitError(f"-o {path}: the folder {parent} is not writable; write the output somewhere else.")
    return path


def _json_value(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return _plain(value)


def _write_json(df: pd.DataFrame, path: Path, lines: bool) -> None:
    """Records as JSON lines (or one array), floats exactly (shortest repr that round-trips), NaN as null."""
    rows = (json.dumps({k: _json_value(v) for k, v in rec.items()}, ensure_ascii=False, default=str)
            for rec in df.to_dict(orient="records"))
    with open(path, "w", encoding="utf-8") as f:
        if lines:
            for row in rows:
                f.write(row + "\n")
        else:
            f.write("[\n" + ",\n".join(rows) + "\n]\n")


def save_pairs(
    df: pd.DataFrame, path: str | os.PathLike, format: Literal["jsonl", "json", "parquet", "dataset"] | None = None
) -> Path:
    """Write the pair table atomically as JSON lines (``.jsonl``), one JSON array (``.json``), Parquet
    (``.parquet``) or a ``datasets`` folder (any other name, or ``format="dataset"``; load it with
    ``datasets.load_from_disk``). Each loads with ``datasets`` and goes to TRL 1.16's DPOTrainer
    unchanged. Returns the path.

    A file is written to a temporary sibling and renamed onto ``path``. A folder is written to a
    temporary sibling holding the tifkit marker file, then swapped in (``tifkit.io.replace_folder``:
    a kill at any moment leaves the old or the new folder complete at ``path``); an existing folder
    without the marker (not tifkit's) is never replaced. Temporary siblings are removed on every exit,
    and those of killed runs by the next call."""
    path = Path(path).expanduser()
    format = format or output_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_temps(path.parent, recursive=False)  # temp files of killed runs beside the output
    if format in ("jsonl", "json"):
        with atomic_path(path) as tmp:
            _write_json(df, tmp, lines=format == "jsonl")
    elif format == "parquet":
        with atomic_path(path) as tmp:
            df.to_parquet(tmp, index=False)
    else:  # a folder: write beside it, then swap it in
        with stage_lock(path):
            if path.is_dir() and any(path.iterdir()) and not is_tifkit_output(path):
                raise TifkitError(f"{path} is a folder with files tifkit did not write; it is never replaced: give a "
                                  "new or empty folder name.")
            tmp = Path(tempfile.mkdtemp(prefix=tmp_prefix(path.name), dir=path.parent))
            try:
                to_trl_dataset(df).save_to_disk(str(tmp))
                publish_folder(tmp, path, "pairs")
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    return path
