"""The package's layering, read from the source (ast): no module reaches into another module's
private (underscore) names, experiments never import the notebook layer, and the experiments
package re-exports public names only."""
import ast
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


def private_crossings(name: str, path: Path) -> list[str]:
    """'line: what' for every underscore name this module takes from another tifkit module: by
    `from tifkit.x import _y`, or as `x._y` on a tifkit module it imported."""
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
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and node.attr.startswith("_") and not node.attr.startswith("__") and aliases[node.value.id] != name):
            found.append(f"{node.lineno}: {aliases[node.value.id]}.{node.attr}")
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
