#!/usr/bin/env bash
# Where `make setup`'s time goes: the downloads, pip's install with and without byte-compiling, and
# compileall over the same files on every core. Each install goes into a new virtual environment under
# a temporary folder (removed at the end), from the same downloaded wheels, so the network is timed once
# and apart. Prints one line per phase; docs/PERFORMANCE.md, "make setup", records a run.
#
#   bash bench/bench_setup.sh          # from the repository root; PY (default python3) makes the venvs
#
# It needs the package index (the downloads) and about 5 GB of temporary disk; in the repository it
# writes only what `make setup` writes there too (setuptools' tifkit.egg-info, git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
now() { date +%s.%N; }
say() { awk -v a="$2" -v b="$3" -v what="$1" 'BEGIN { printf "%-60s %6.1f s\n", what, b - a }'; }
venv() { "$PY" -m venv "$work/$1" && "$work/$1/bin/python" -m pip install --quiet --upgrade pip 2>/dev/null; }
install() {  # venv name, extra pip options...
  local v=$1; shift
  "$work/$v/bin/python" -m pip install --quiet "$@" --no-index --find-links "$work/wheels" \
    -c constraints.txt -e ".[notebooks,test]" 2>/dev/null
}
site() { "$work/$1/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'; }

venv a
t0=$(now); "$work/a/bin/python" -m pip download --quiet -d "$work/wheels" -c constraints.txt ".[notebooks,test]" 2>/dev/null
t1=$(now); say "download every wheel (pip download)" "$t0" "$t1"

t0=$(now); install a; t1=$(now)
say "pip install, compiling (pip's default)" "$t0" "$t1"

venv b
t0=$(now); install b --no-compile; t1=$(now)
say "pip install --no-compile" "$t0" "$t1"
t2=$(now); "$work/b/bin/python" -m compileall -q -j 0 "$(site b)" >/dev/null 2>&1 || true; t3=$(now)
say "compileall -j 0 (every core) over the same files" "$t2" "$t3"
say "pip install --no-compile, then compileall -j 0 (make setup)" "$t0" "$t3"

count() { find "$(site "$1")" -name '*.pyc' | wc -l; }
echo "compiled files: pip $(count a), compileall $(count b); cores: $(nproc)"
