"""The package's layering, read from the source (ast): no module reaches into another module's
private (underscore) names, experiments never import the notebook layer, the experiments package
re-exports public names only, imports of tifkit modules sit at the top of each module (a short
allow-list aside), the headers import no cycle, and config and `tifkit --help` stay light."""
import ast
import re
import subprocess
import sys
from pathlib import Path

import tifkit

PKG = Path(tifkit.__file__).resolve().parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules():
    return {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def resolve(node: ast.ImportFrom, here: str, is_pkg: bool) -> str:
    if not node.level:
        return node.module or ""
    base = here.split(".") if is_pkg else here.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _private(attr: str) -> bool:
    return attr.startswith("_") and not attr.startswith("__")


def _module_expr(node, aliases: dict) -> str | None:
    """The tifkit module an expression names: an imported alias, a dotted chain `tifkit.x.y`, or
    `importlib.import_module("tifkit.x")`."""
    if isinstance(node, ast.Name):
        return aliases.get(node.id)
    if isinstance(node, ast.Attribute):
        parts = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if isinstance(node, ast.Name) and node.id == "tifkit":
            dotted = ".".join(["tifkit", *reversed(parts)])
            return dotted if dotted in modules() else None
    if (isinstance(node, ast.Call) and isinstance(node.func, (ast.Attribute, ast.Name))
            and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
            and node.args and isinstance(node.args[0], ast.Constant) and str(node.args[0].value).startswith("tifkit")):
        return str(node.args[0].value)
    return None


def private_crossings(name: str, path: Path) -> list[str]:
    """'line: what' for every underscore name this module takes from another tifkit module: by
    `from tifkit.x import _y`, as `x._y` on a tifkit module it imported (under any name, or spelled
    `tifkit.x._y` after `import tifkit.x`), by `getattr(x, "_y")`, or on
    `importlib.import_module("tifkit.x")`."""
    tree = ast.parse(path.read_text())
    found, aliases = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            src = resolve(node, name, path.name == "__init__.py")
            if not src.startswith("tifkit"):
                continue
            for a in node.names:
                if src == name:
                    continue
                if a.name.startswith("_") and not a.name.startswith("__"):
                    found.append(f"{node.lineno}: from {src} import {a.name}")
                elif f"{src}.{a.name}" in modules():  # a module: its attributes are checked below
                    aliases[a.asname or a.name] = f"{src}.{a.name}"
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("tifkit") and a.asname:
                    aliases[a.asname] = a.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            mod = _module_expr(node.value, aliases)
            if mod and mod != name:
                found.append(f"{node.lineno}: {mod}.{node.attr}")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr"
              and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
              and isinstance(node.args[1].value, str) and _private(node.args[1].value)):
            mod = _module_expr(node.args[0], aliases)
            if mod and mod != name:
                found.append(f"{node.lineno}: getattr({mod}, {node.args[1].value!r})")
    return found


def test_no_module_imports_a_private_name_of_another():
    bad = {name: hits for name, path in modules().items() if (hits := private_crossings(name, path))}
    assert not bad, "private names crossed between modules (make them public): " + repr(bad)


def test_the_walker_sees_a_private_import(tmp_path):
    # the check above could pass by seeing nothing: it must flag both forms
    fake = tmp_path / "m.py"
    fake.write_text("from tifkit.pipeline import _load_base, say\nfrom tifkit import batch\nbatch._label('x', 1)\n")
    hits = private_crossings("tifkit.fake", fake)
    assert hits == ["1: from tifkit.pipeline import _load_base", "3: tifkit.batch._label"]
    # the other spellings of the same crossing
    fake.write_text("import importlib\nimport tifkit.batch\nfrom tifkit import io as tio\n"
                    "tifkit.batch._rule_rows\ngetattr(tio, '_old_name')\nimportlib.import_module('tifkit.batch')._x\n"
                    "getattr(tio, 'atomic_path')\nobj._private\n")
    assert private_crossings("tifkit.fake", fake) == [
        "4: tifkit.batch._rule_rows", "5: getattr(tifkit.io, '_old_name')", "6: tifkit.batch._x"]


def test_experiments_do_not_import_the_notebook_layer():
    for name, path in modules().items():
        if not name.startswith("tifkit.experiments"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                src = resolve(node, name, path.name == "__init__.py")
                assert src != "tifkit.notebooks" and not any(a.name == "notebooks" for a in node.names), (name, node.lineno)
            elif isinstance(node, ast.Import):
                assert all(a.name != "tifkit.notebooks" for a in node.names), (name, node.lineno)


def test_one_workers_module_and_public_reexports():
    import tifkit.experiments as E

    assert not (PKG / "experiments" / "workers.py").exists()
    tree = ast.parse((PKG / "experiments" / "__init__.py").read_text())
    exported = [a.name for n in tree.body if isinstance(n, ast.ImportFrom) for a in n.names]
    assert exported and not [n for n in exported if n.startswith("_")]
    assert all(hasattr(E, n) for n in exported)


# ------------------------------------------------------------------------------- imports at the top
# The only imports of tifkit modules that may sit inside a function; every other one is at the top of
# its module, so that a file's header shows what it depends on. Each entry has a reason, and the module
# says it in one "# deferred:" comment in its header. Keep this list short.
DEFERRED = {
    # --help and argument errors answer without pandas or torch: each command imports its own layer
    "tifkit.cli": {"tifkit.batch", "tifkit.data", "tifkit.datareport", "tifkit.evaluate", "tifkit.notebooks",
                   "tifkit.pipeline", "tifkit.select", "tifkit.userfiles"},
    # judging and the intervals load without torch; only generation needs logprobs (torch)
    "tifkit.evaluate": {"tifkit.logprobs"},
    # reward imports transformers' model classes (seconds); only the reward-model judge and stage need it
    "tifkit.judges": {"tifkit.reward"},
    "tifkit.pipeline": {"tifkit.reward"},
}
# Not an import statement, so not counted: tifkit.rules loads tifkit.select with importlib at the first
# lookup (select registers the built-in rules and imports rules: a cycle at import time otherwise).


def imported_modules(node, name: str, is_pkg: bool) -> list[str]:
    """The tifkit modules an import statement loads (`from tifkit import rules` loads tifkit.rules)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "tifkit"]
    src = resolve(node, name, is_pkg)
    if src.split(".")[0] != "tifkit":
        return []
    known = modules()
    return sorted({f"{src}.{a.name}" if f"{src}.{a.name}" in known else src for a in node.names})


def split_imports(name: str, path: Path) -> tuple[dict[str, list[int]], set[str]]:
    """({tifkit module: [lines]} imported inside a function, {tifkit modules} imported at module level
    (in an `if` or `try` at module level too))."""
    inner: dict[str, list[int]] = {}
    top: set[str] = set()
    is_pkg = path.name == "__init__.py"

    def visit(node, in_function: bool):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                for m in imported_modules(child, name, is_pkg):
                    if in_function:
                        inner.setdefault(m, []).append(child.lineno)
                    else:
                        top.add(m)
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(ast.parse(path.read_text()), False)
    return inner, top


def test_tifkit_imports_sit_at_the_top_of_each_module():
    found = {name: split_imports(name, path)[0] for name, path in modules().items()}
    extra = {name: {m: lines for m, lines in inner.items() if m not in DEFERRED.get(name, set())}
             for name, inner in found.items()}
    extra = {name: hits for name, hits in extra.items() if hits}
    assert not extra, ("imports of tifkit modules inside functions (move them to the module's header, or add "
                       "them to DEFERRED with the reason): " + repr(extra))
    stale = {name: sorted(set(allowed) - set(found.get(name, {}))) for name, allowed in DEFERRED.items()}
    assert not {n: s for n, s in stale.items() if s}, f"DEFERRED names imports that are gone; remove them: {stale}"


def test_each_deferring_module_says_why_in_one_comment():
    for name in DEFERRED:
        text = modules()[name].read_text()
        comments = [line for line in text.splitlines() if line.startswith("# deferred:")]
        assert len(comments) == 1, (name, comments)
        for m in DEFERRED[name]:  # the comment names each deferred module
            assert m.split(".")[-1] in text[text.index("# deferred:"):].split("\n\n")[0], (name, m)


def test_the_import_walker_sees_function_level_imports(tmp_path):
    # the checks above could pass by seeing nothing: every form must be found, and only tifkit's
    fake = tmp_path / "m.py"
    fake.write_text("import os\nfrom tifkit.io import atomic_path\nfrom tifkit import rules as r\n"
                    "try:\n    import tifkit.stats\nexcept ImportError:\n    pass\n"
                    "def f():\n    import json\n    from tifkit.select import select\n"
                    "    if True:\n        from tifkit import pipeline\n    from . import data\n"
                    "    return lambda: __import__('x')\n"
                    "class C:\n    def g(self):\n        import tifkit.world as w\n")
    inner, top = split_imports("tifkit.fake", fake)
    assert top == {"tifkit.io", "tifkit.rules", "tifkit.stats"}
    assert inner == {"tifkit.select": [10], "tifkit.pipeline": [12], "tifkit.data": [13], "tifkit.world": [17]}


def import_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle of `graph` ([a, b, ..., a]), or [] when it has none (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def dfs(u):
        state[u] = 1
        path.append(u)
        for v in sorted(graph.get(u, ())):
            if state.get(v) == 1:
                return path[path.index(v):] + [v]
            if v not in state and (c := dfs(v)):
                return c
        state[u] = 2
        path.pop()
        return []

    for u in sorted(graph):
        if u not in state and (c := dfs(u)):
            return c
    return []


def test_no_import_cycle_between_module_headers():
    graph = {name: split_imports(name, path)[1] - {name} for name, path in modules().items()}
    assert graph["tifkit.pipeline"] and graph["tifkit.batch"]  # the walk saw the headers
    assert import_cycle(graph) == [], "modules import each other at the top: " + " -> ".join(import_cycle(graph))
    assert import_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]


def test_light_entry_points_stay_light():
    # config is the ground floor (no method module); `tifkit --help` loads neither pandas nor torch
    code = ("import sys\nimport tifkit.config\nprint(sorted(m for m in sys.modules if m.startswith('tifkit')))\n"
            "from tifkit.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('pandas', 'torch', 'transformers', 'scipy') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    lines = out.strip().splitlines()
    assert lines[0] == repr(["tifkit", "tifkit.config", "tifkit.rules"])
    assert "usage:" in out and lines[-1] == "[]"


# The rows of docs/ARCHITECTURE.md's diagram, bottom first: a module imports from its own row or the
# rows below it. Short names; experiments/* are studies.
LAYERS = {
    "ground": {"__init__", "config", "rules", "io", "stats", "losses", "workers"},
    "inputs": {"world", "data", "models", "tokenizer", "userfiles"},
    "method": {"scores", "memory", "influence", "logprobs", "shapes", "train", "reward", "select", "evaluate", "judges"},
    "analysis": {"report", "conclusions", "plots", "results"},
    "stages": {"pipeline"},
    "studies": {"batch", "family_grid", "experiments", "core", "subsets", "families", "benchmark", "decisions"},
    "faces": {"cli", "__main__", "notebooks", "datareport"},
}


def short(module: str) -> str:
    return "__init__" if module == "tifkit" else module.split(".")[-1]


def test_imports_point_down_the_layers_the_architecture_draws():
    row = {name: i for i, names in enumerate(LAYERS.values()) for name in names}
    assert sorted(short(m) for m in modules()) == sorted(row), "a module is missing from LAYERS (or LAYERS names a gone one)"
    upward = []
    for name, path in modules().items():
        inner, top = split_imports(name, path)
        upward += [f"{name} -> {m}" for m in top | set(inner) if row[short(m)] > row[short(name)]]
    assert not upward, "imports from a higher layer (docs/ARCHITECTURE.md): " + ", ".join(sorted(upward))
    # the document draws the same rows and gives every module its line in the table
    doc = (PKG.parent / "docs" / "ARCHITECTURE.md").read_text()
    drawing = doc.split("```", 2)[1]
    for layer, names in LAYERS.items():
        line = next(ln for ln in drawing.splitlines() if ln.strip().startswith(layer + " "))
        assert all(re.search(rf"(?<!\w){re.escape(n)}(?!\w)", line) for n in names), (layer, line)
    for path in sorted(PKG.glob("*.py")):
        assert f"| `{path.name}` |" in doc, f"docs/ARCHITECTURE.md has no line for {path.name}"
    assert "| `experiments/` |" in doc


def test_every_tifkit_import_is_one_the_provenance_closure_reads():
    """A result's source hash covers the modules its run imports as `tifkit.io.module_closure` reads them:
    absolute `import tifkit.x` / `from tifkit.x import y`, and a module named by its full name in a string
    (tifkit.rules imports tifkit.select so). A relative import, `__import__`, or `importlib.import_module`
    of anything but a literal module name would hide a dependency from it, and a changed module would
    then leave a result looking current: none may appear."""
    hidden = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                hidden.append(f"{name}:{node.lineno}: relative import")
            elif isinstance(node, ast.Call):
                fn = node.func
                called = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
                if called == "__import__":
                    hidden.append(f"{name}:{node.lineno}: __import__")
                elif called == "import_module":
                    arg = node.args[0] if node.args else None
                    if not (isinstance(arg, ast.Constant) and arg.value in modules()):
                        hidden.append(f"{name}:{node.lineno}: import_module of a computed name")
    assert not hidden, "imports the provenance closure cannot see: " + ", ".join(hidden)
    from tifkit.io import module_closure

    assert PKG / "select.py" in module_closure(["tifkit.rules"])  # the string import is followed
