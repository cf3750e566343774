"""Small file helpers: atomic writes, content hashes, checksummed caches and stage folders.

Every cached artifact carries a checksum of its content, written with it, and is verified when it
is reused: Parquet tables carry ``tifkit.checksum`` (a hash of the column values) in their schema
metadata; stage folders (model checkpoints) carry ``stage.json``, written last, with the sha256 of
every file in the folder. ``stage.json`` is the only proof that a stage is done.

Temporary files and folders are named ``.<name>.tmp-<host>-<pid>-<random>``: a process that was
killed leaves some behind, and ``sweep_temps`` removes those of this host whose process is gone.
"""
from __future__ import annotations

import ast
import contextlib
import functools
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Iterator

log = logging.getLogger(__name__)

STAGE_FILE = "stage.json"
CHECKSUM_KEY = b"tifkit.checksum"


class CorruptCache(Exception):
    """A cached file does not read back or its checksum does not match (the caller recomputes it)."""


# ------------------------------------------------------------------------------------------ temp files
def _host() -> str:
    import socket

    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32] or "host"


def tmp_prefix(name: str) -> str:
    return f".{name}.tmp-{_host()}-{os.getpid()}-"


_TMP_RE = re.compile(r"^\..*\.tmp-([A-Za-z0-9]+)-(\d+)-")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def sweep_temps(folder: str | os.PathLike, recursive: bool = True) -> int:
    """Remove temporary files/folders under `folder` left by processes of this machine that no longer
    run (other machines' temp files are left alone); return the count."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    n, host = 0, _host()
    for root, dirs, files in os.walk(folder):
        for name in list(dirs) + files:
            m = _TMP_RE.match(name)
            if not m or m.group(1) != host or _pid_alive(int(m.group(2))):
                continue
            path = Path(root) / name
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
                if name in dirs:
                    dirs.remove(name)
            else:
                with contextlib.suppress(OSError):  # gone already, or a read-only folder: left alone
                    path.unlink()
            n += 1
        if not recursive:
            break
    if n:
        log.info("removed %d temporary file(s) left by killed runs under %s", n, folder)
    return n


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed onto `path` (no half files)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=tmp_prefix(path.name), suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        try:
            yield tmp
        except OSError as e:  # a failed write (full disk, file-size limit) names the file it was writing
            if e.filename is None and e.errno is not None:
                raise OSError(e.errno, e.strerror or os.strerror(e.errno), str(path)) from e
            raise
        if tmp.exists():  # mkstemp makes the file 0600; give it the permissions a plain open() would
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def content_hash(obj, n: int = 12) -> str:
    """Stable short hash of a JSON-serialisable object (dict keys sorted)."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:n]


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ------------------------------------------------------------------------------- checksummed Parquet
def table_checksum(table) -> str:
    """sha256 of a pyarrow Table's column names and values (schema metadata and chunking ignored)."""
    import numpy as np
    import pyarrow as pa

    h = hashlib.sha256()
    h.update(str(table.num_rows).encode())
    for name, col in zip(table.column_names, table.columns):
        h.update(f"|{name}|".encode())
        col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        t = col.type
        if (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)) and col.null_count == 0:
            arr = np.ascontiguousarray(col.to_numpy(zero_copy_only=False))
            h.update(str(arr.dtype).encode())
            h.update(arr.tobytes())
        else:
            h.update(json.dumps(col.to_pylist(), default=str).encode())
    return h.hexdigest()


def frame_checksum(df) -> str:
    """`table_checksum` of a DataFrame as it is written to Parquet."""
    import pyarrow as pa

    return table_checksum(pa.Table.from_pandas(df, preserve_index=False))


def write_table(df, path: str | os.PathLike, meta: dict[bytes, bytes] | None = None) -> Path:
    """Write a DataFrame to Parquet atomically and deterministically (fixed schema, no timestamps),
    with `meta` and a content checksum in the schema metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, preserve_index=False)
    extra = {**(meta or {}), CHECKSUM_KEY: table_checksum(table).encode()}
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **extra})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return Path(path)


def table_unchanged(df, path: str | os.PathLike) -> bool:
    """True if `path` is a verified Parquet table with the same values as `df` (no need to rewrite it)."""
    import pyarrow.parquet as pq

    try:
        stored = (pq.read_schema(path).metadata or {}).get(CHECKSUM_KEY)
        if stored is None or stored != frame_checksum(df).encode():
            return False
        read_verified(path)
        return True
    except (OSError, CorruptCache, ValueError):
        return False
    except Exception:  # noqa: BLE001 - unreadable: rewrite it
        return False


def write_parquet(df, path: str | os.PathLike) -> Path:
    """Write a DataFrame to Parquet atomically, with a content checksum (see `read_verified`)."""
    return write_table(df, path)


def read_verified(path: str | os.PathLike, columns: list[str] | None = None):
    """Read a Parquet file written by `write_table` and check its checksum; return the pyarrow Table.

    Raises `CorruptCache` when the file does not read, has no checksum, or the values differ."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
        expected = (table.schema.metadata or {}).get(CHECKSUM_KEY)
        ok = expected is not None and table_checksum(table).encode() == expected
    except FileNotFoundError:
        raise
    except Exception as e:  # noqa: BLE001 - any parse error means a damaged file
        raise CorruptCache(f"{path} does not read back ({type(e).__name__}: {str(e)[:100]})") from None
    if not ok:
        raise CorruptCache(f"{path} fails its checksum" if expected is not None else f"{path} has no checksum")
    return table.select(columns) if columns is not None else table


def parquet_ok(path: str | os.PathLike, what: str = "cached file") -> bool:
    """True if `path` exists and passes its checksum; a damaged file is reported (warning) and removed."""
    path = Path(path)
    if not path.exists():
        return False
    try:
        read_verified(path)
        return True
    except CorruptCache as e:
        _warn(f"{what} {e}; recomputing it.")
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return False


def _warn(msg: str) -> None:
    import sys

    print(f"[tifkit] warning: {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------- source hash
PACKAGE = Path(__file__).resolve().parent


@functools.lru_cache(maxsize=256)
def _syntax_tree(text: str) -> ast.Module | None:
    """`text` parsed (None when it does not parse): a source hash reads each file's tree twice, for its
    imports and for its code lines, and parses it once."""
    try:
        return ast.parse(text)
    except SyntaxError:
        return None


def _code_lines(text: str) -> str:
    """The source without docstrings, comment-only lines, blank lines and trailing spaces."""
    lines = text.splitlines()
    drop: set[int] = set()
    tree = _syntax_tree(text)
    if tree is not None:
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body:
                first = body[0]
                if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                        and isinstance(first.value.value, str)):
                    drop.update(range(first.lineno - 1, first.end_lineno))
    keep = [ln.rstrip() for i, ln in enumerate(lines) if i not in drop]
    return "\n".join(ln for ln in keep if ln.strip() and not ln.lstrip().startswith("#"))


def _module_files(package: Path) -> dict[str, Path]:
    """{dotted module name: file} for every .py under `package` (a package's name for its __init__)."""
    out = {}
    for f in package.rglob("*.py"):
        parts = (package.name, *f.relative_to(package).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def _dotted(node) -> str | None:
    """"a.b.c" for the attribute chain a.b.c (a name at its base), else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return ".".join([node.id, *reversed(parts)]) if isinstance(node, ast.Name) else None


def _imported(text: str, names: set[str]) -> set[str]:
    """The modules of `names` that `text` imports anywhere (at the top or inside a function), names as a
    string (an import by name, as tifkit.rules does for tifkit.select), or reaches as an attribute chain
    (`tifkit.x.y`), with their parent packages. Code that does not parse (a file half-saved mid-run)
    counts as importing every module: a hash over it then always reads as changed, never as current."""
    tree = _syntax_tree(text)
    if tree is None:
        return set(names)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names:
            found.add(node.value)
        elif isinstance(node, ast.Attribute) and (chain := _dotted(node)) and chain.startswith("tifkit."):
            found.add(chain)
    with_parents = {".".join(m.split(".")[:i]) for m in found for i in range(1, m.count(".") + 2)}
    return with_parents & names


def module_closure(roots, package: str | os.PathLike = PACKAGE) -> list[Path]:
    """The files of `roots` (dotted module names) and of every tifkit module they import, directly or
    not, read from the code (ast): what can change the numbers a run of `roots` computes."""
    package = Path(package)
    files = _module_files(package)
    missing = [r for r in roots if r not in files]
    if missing:
        raise ValueError(f"no module {', '.join(missing)} under {package}")
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += _imported(files[name].read_text(encoding="utf-8"), set(files)) - seen
    return sorted(files[n] for n in seen)


def source_files(package: str | os.PathLike = PACKAGE, roots=None) -> list[Path]:
    """Every tifkit/**/*.py, or (with `roots`) the files of those modules and all they import."""
    if roots:
        return module_closure(roots, package)
    return sorted(Path(package).rglob("*.py"))


def source_hash(package: str | os.PathLike = PACKAGE, roots=None) -> str:
    """sha256 (16 hex digits) over the code of every tifkit/**/*.py as the files are now, or (with `roots`,
    e.g. ["tifkit.batch"]) of the modules a run of those imports: docstrings, comment-only lines and
    blank lines left out, so that prose edits change no result's provenance."""
    h = hashlib.sha256()
    for p in source_files(package, roots):
        h.update(f"\0{p.relative_to(package).as_posix()}\0".encode())
        h.update(_code_lines(p.read_text(encoding="utf-8")).encode())
    return h.hexdigest()[:16]


STAGE_SOURCES = ("tifkit.pipeline",)  # the modules whose code makes a stage folder (stage.json records their hash)


@functools.lru_cache(maxsize=1)
def running_source_hash() -> str:
    """The source hash of the stage-making code (`STAGE_SOURCES` and what it imports) as this process
    first computed it: what stage.json records, so that a cache made by other code can be told apart."""
    return source_hash(roots=STAGE_SOURCES)


# ------------------------------------------------------------------------------------- stage folders
_locks: dict[str, object] = {}
_foreign_sources: set[str] = set()  # source hashes of reused stages already warned about
_locks_guard = threading.Lock()


def stage_lock(out_dir: str | os.PathLike):
    """A file lock for one stage folder, re-entrant within a process. The lock file lives in a per-user
    folder of the system's temp dir (named by a hash of the folder's absolute path), so that run
    folders hold only results; the lock covers the processes of one machine."""
    from filelock import FileLock

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.gettempdir()) / f"tifkit-locks-{os.getuid()}"
    folder.mkdir(exist_ok=True)
    resolved = str(out_dir.resolve())
    key = str(folder / f"{out_dir.name}-{hashlib.sha256(resolved.encode()).hexdigest()[:16]}.lock")
    with _locks_guard:
        if key not in _locks:
            _locks[key] = FileLock(key)
        return _locks[key]


def _folder_checksums(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): file_sha256(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != STAGE_FILE}


def stage_info(out_dir: str | os.PathLike) -> dict | None:
    """The parsed stage.json of a stage folder, or None."""
    try:
        info = json.loads((Path(out_dir) / STAGE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def stage_complete(out_dir: str | os.PathLike, verify: bool = True, warn: bool = True) -> bool:
    """True if `out_dir` is a finished stage: its stage.json exists and (with `verify`) every file it
    lists has the recorded sha256. A folder that fails is reported (warning) and counts as not done."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return False
    info = stage_info(out_dir)
    if info is None:
        if warn and any(out_dir.iterdir()):
            _warn(f"stage folder {out_dir} has no valid {STAGE_FILE} (an interrupted save, or an older tifkit); "
                  "redoing it.")
        return False
    made_by = info.get("source_hash")
    if warn and made_by and made_by != running_source_hash() and made_by not in _foreign_sources:
        _foreign_sources.add(made_by)
        _warn(f"{out_dir} was made by tifkit sources {made_by}, this code is {running_source_hash()}: it is "
              "reused (its cache key holds the parameters, not the code), so what is computed from it is "
              "what that code computed. For results to compare or commit, use an empty run root "
              "(--set run.root=<new folder>). Said once per such source hash.")
    files = info.get("files")
    if not verify or files is None:  # stage.json of older versions lists no files
        return True
    for name, digest in files.items():
        p = out_dir / name
        if not p.is_file() or file_sha256(p) != digest:
            if warn:
                _warn(f"{p} is missing or fails its checksum (damaged stage folder); redoing the stage.")
            return False
    return True


def save_stage(model, tokenizer, out_dir: str | os.PathLike, extra: dict | None = None,
               info: dict | None = None) -> Path:
    """save_pretrained model and tokenizer (and `extra` DataFrames as Parquet) into a temporary
    sibling folder, write stage.json (with `info` and the sha256 of every file) last, then rename the
    folder onto `out_dir`. Holds the stage's lock: two processes saving the same stage never race, and
    a complete stage another process saved meanwhile is kept (the save is then a no-op)."""
    out_dir = Path(out_dir)
    with stage_lock(out_dir):
        if stage_complete(out_dir, warn=False) and all((out_dir / f"{n}.parquet").exists() for n in (extra or {})):
            return out_dir
        tmp = Path(tempfile.mkdtemp(prefix=tmp_prefix(out_dir.name), dir=out_dir.parent))
        try:
            model.save_pretrained(tmp)
            if tokenizer is not None:
                tokenizer.save_pretrained(tmp)
            for name, df in (extra or {}).items():
                df.to_parquet(tmp / f"{name}.parquet", index=False)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it 0700; give it a plain mkdir's permissions
            record = {**(info or {}), "source_hash": running_source_hash(), "files": _folder_checksums(tmp)}
            (tmp / STAGE_FILE).write_text(json.dumps(record, indent=1, default=str))
            if out_dir.exists():
                old = Path(tempfile.mkdtemp(prefix=tmp_prefix(out_dir.name + ".old"), dir=out_dir.parent))
                os.replace(out_dir, old / "stage")
                os.replace(tmp, out_dir)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, out_dir)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


# ------------------------------------------------------------------------------------------ progress
# The resumable loop now running (e.g. score chunks), so that an interrupted command can say where a
# rerun resumes: {"what": "chunks", "done": n, "total": m}.
PROGRESS: dict = {}


def note_progress(what: str, done: int, total: int) -> None:
    PROGRESS.update(what=what, done=int(done), total=int(total))


# ------------------------------------------------------------------------------ user-facing outputs
# Folders tifkit writes for the user (a `select -o DIR` dataset, an `export-tiny` model) carry this
# marker file; a folder without it is never replaced or deleted.
OUTPUT_MARKER = ".tifkit-output"


def is_tifkit_output(folder: str | os.PathLike) -> bool:
    """True if `folder` is a folder tifkit wrote for the user (it holds the marker file)."""
    return (Path(folder) / OUTPUT_MARKER).is_file()


def write_output_marker(folder: str | os.PathLike, what: str) -> None:
    (Path(folder) / OUTPUT_MARKER).write_text(json.dumps({"written_by": "tifkit", "what": what}) + "\n")


def _old_name(path: Path) -> Path:
    """Where the two-rename fallback of `replace_folder` parks the previous folder for a moment."""
    return path.with_name(f".{path.name}.tifkit-old")


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where the system or the
    file system cannot (the caller then falls back to two renames)."""
    import ctypes
    import errno
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def recover_folder(path: str | os.PathLike) -> None:
    """Finish a folder replacement that a kill interrupted in the two-rename fallback: the previous
    folder goes back to `path` if nothing is there, else (the new one made it) it is removed."""
    path = Path(path)
    old = _old_name(path)
    if not old.exists():
        return
    if path.exists():
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(old, path)


def publish_folder(tmp: str | os.PathLike, dest: str | os.PathLike, kind: str) -> None:
    """Hand a finished output folder `tmp` (made by tempfile.mkdtemp next to `dest`) to the user: the
    tifkit-output marker of `kind`, the permissions of a folder the user made (mkdtemp makes 0700), then
    the atomic swap of replace_folder."""
    write_output_marker(tmp, kind)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)
    replace_folder(tmp, dest)


def replace_folder(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Move the finished folder `tmp` (a temp sibling of `path`) onto `path`. An existing `path` is
    swapped out in one step where the system allows (Linux), so that a kill at any moment leaves
    either the old or the new folder complete at `path`; elsewhere two renames, whose rare
    interruption `recover_folder` undoes on the next call. The old folder is then removed."""
    tmp, path = Path(tmp), Path(path)
    recover_folder(path)
    if not path.exists():
        os.replace(tmp, path)
        return
    if _exchange(tmp, path):
        shutil.rmtree(tmp, ignore_errors=True)  # now the old folder, under the temp name
        return
    old = _old_name(path)
    os.replace(path, old)
    try:
        os.replace(tmp, path)
    except BaseException:
        os.replace(old, path)  # the second rename failed: the previous folder goes back
        raise
    shutil.rmtree(old, ignore_errors=True)
