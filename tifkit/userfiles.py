"""The user's files as a command sees them: the --data / --model paths as parameters, a fingerprint of
what local files hold now, and where an output may go.

Every command (tifkit.cli) and `tifkit report` (tifkit.datareport, and notebook 07 inside it) apply
--data / --model through `own_params`, so one file is one run however its path is spelled. The
pipeline keys a run folder by the parameters, paths included; the run's name carries `fingerprint`,
so that a data file, a datasets folder or a model folder changed in place is a new run, never the
cached stages and scores of its old content. The built-in world and hub models get no fingerprint:
their parameters already name their content, and their run folders are as before.

This module imports no model code (no torch), so that the commands answer argument mistakes quickly.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from tifkit import TifkitError
from tifkit.data import source_for_path
from tifkit.io import content_hash, file_sha256

# files up to this size are fingerprinted by their bytes (a re-export or a re-copy of the same content is
# the same run); larger ones (checkpoint shards) by size and modification time (hashing them would take
# minutes)
CONTENT_LIMIT = 64 << 20


def absolute(path: str) -> str:
    """A local path made absolute (`~` expanded); anything else (a hub id) as given."""
    local = Path(path).expanduser()
    return str(local.resolve()) if local.exists() else str(path)


def own_params(p, data: str | None = None, model: str | None = None):
    """`p` with --data / --model applied (no YAML parsing of paths): local paths absolute, the run named
    after the data file when the params file leaves the default name, and `fingerprint` appended."""
    if data:
        data = absolute(data)
        run = p.run if p.run.name != "tiny" else dataclasses.replace(p.run, name=_stem(data))
        p = dataclasses.replace(p, data=dataclasses.replace(p.data, path=data, source=source_for_path(data)),
                                run=run)
    if model:
        p = dataclasses.replace(p, model=dataclasses.replace(p.model, name_or_path=absolute(model)))
    fp = fingerprint(p)
    if not fp or p.run.name.endswith(f"-{fp}"):  # none, or applied already
        return p
    return dataclasses.replace(p, run=dataclasses.replace(p.run, name=f"{p.run.name}-{fp}"))


def _stem(path: str) -> str:
    """A data file's name without its format's suffixes (pairs.jsonl.gz -> pairs)."""
    name = Path(path).name
    for suffix in (".gz", ".jsonl", ".json", ".parquet"):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
    return name or "data"


def _files(path: Path) -> list:
    """What a file or folder holds now: per file its name (relative), and its sha256 up to
    CONTENT_LIMIT bytes, else its size and modification time."""
    files = [path] if path.is_file() else sorted(f for f in path.rglob("*") if f.is_file())
    out = []
    for f in files:
        st = f.stat()
        name = f.name if f == path else str(f.relative_to(path))
        out.append([name, file_sha256(f)] if st.st_size <= CONTENT_LIMIT else [name, st.st_size, st.st_mtime_ns])
    return out


def fingerprint(p) -> str:
    """Eight hex digits naming what the run's local inputs hold now (`_files` of the data file or
    datasets folder, and of a local model folder); empty for the built-in world and hub models."""
    parts = []
    if p.data.source != "world" and p.data.path and Path(p.data.path).expanduser().exists():
        parts.append(_files(Path(p.data.path).expanduser()))
    folder = Path(p.model.name_or_path).expanduser() if p.model.name_or_path else None
    if folder is not None and folder.is_dir():
        parts.append(_files(folder))
    return content_hash(parts, n=8) if parts else ""


def out_path(out: str, flag: str = "-o") -> Path:
    """An output path as written to: absolute, `~` expanded, and with a name of its own; never the
    file system's root or the folder the shell is in (a folder output is swapped in whole)."""
    path = Path(out).expanduser().resolve()
    if not path.name:
        raise TifkitError(f"{flag} {out} is the file system's root; give a file or folder name.")
    if path == Path.cwd().resolve():
        example = "tiny-sft/" if flag == "export-tiny" else "kept/"
        raise TifkitError(f"{flag} {out} is the folder you are in; give a new folder name (e.g. {flag} {example}).")
    return path


def plain_permissions(folder: str | os.PathLike) -> None:
    """Give every file and folder under `folder` the permissions a plain write under the user's umask
    would (libraries writing through private temp files leave some at 0600, unreadable to the
    user's group on a shared machine)."""
    umask = os.umask(0)
    os.umask(umask)
    for path in [Path(folder), *Path(folder).rglob("*")]:
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)
