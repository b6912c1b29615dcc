"""The package's layering rule (docs/architecture.md), read from the code's own imports.

Every import in ``dasd_utils`` (module level or inside a function) is an arrow from one module
to another. The rule: no import circle, no arrow to a higher layer, no arrow between two phase
packages, and no import of another module's private (``_``-prefixed) name.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "dasd_utils"

#: Layers, lowest first: a module may import modules of its own layer or of lower ones. A module
#: is placed by the longest prefix of its dotted name that appears here.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("config", "jsonl", "hashing", "frenchcells", "layout", "stats", "secrets", "devices", "timing", "reuse",
                    "summaries", "prompts", "quality", "segment", "align", "token_recovery", "chat", "kvcache")),
    ("model helpers", ("models", "scoring", "plots")),
    ("data phase", ("data",)),
    ("phases", ("teacher", "das", "sft", "evaluation")),
    ("analyses", ("analyses",)),
    ("report", ("report",)),
    ("front doors", ("cli", "notebook", "colab", "teaching", "__main__", "__init__")),
]
#: Phase packages never import one another: each reads the previous phases' files.
PHASES = ("teacher", "das", "sft", "evaluation")


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts)  # "teacher.phase", "teacher.__init__", "__init__", "align"


def package_of(name: str) -> str:
    """Return the package a module name lives in ("" for the top level)."""
    parts = name.split(".")
    return ".".join(parts[:-1])


def resolve(importer: str, level: int, target: str | None) -> str | None:
    """Return the dotted module (relative to dasd_utils) a ``from ... import`` names, or None outside the package."""
    if level == 0:
        if not target or not (target == "dasd_utils" or target.startswith("dasd_utils.")):
            return None
        return target[len("dasd_utils."):] if target != "dasd_utils" else ""
    base = package_of(importer).split(".") if package_of(importer) else []
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def as_file_module(dotted: str) -> str | None:
    """Return the module name of a dotted path ("teacher" -> "teacher.__init__"), None if it is no module."""
    path = PACKAGE.joinpath(*dotted.split(".")) if dotted else PACKAGE
    if path.with_suffix(".py").is_file():
        return dotted
    if (path / "__init__.py").is_file():
        return f"{dotted}.__init__" if dotted else "__init__"
    return None


def read_imports():
    """Return {module: [(imported module, names taken, line)]} and {module: [(private attribute use, line)]}."""
    arrows: dict[str, list[tuple[str, list[str], int]]] = {}
    private_uses: dict[str, list[tuple[str, int]]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        found: list[tuple[str, list[str], int]] = []
        module_aliases: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                base = resolve(name, node.level, node.module)
                if base is None:
                    continue
                for alias in node.names:
                    sub = as_file_module(f"{base}.{alias.name}" if base else alias.name) if alias.name != "*" else None
                    if sub is not None:  # "from . import layout": the submodule itself
                        found.append((sub, [], node.lineno))
                        module_aliases[alias.asname or alias.name] = sub
                    else:
                        target = as_file_module(base)
                        assert target is not None, f"{path}:{node.lineno}: cannot resolve {base!r}"
                        found.append((target, [alias.name], node.lineno))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    base = resolve(name, 0, alias.name)
                    if base is not None:
                        target = as_file_module(base)
                        found.append((target, [], node.lineno))
                        if alias.asname:
                            module_aliases[alias.asname] = target
        uses = []
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in module_aliases
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                uses.append((f"{module_aliases[node.value.id]}.{node.attr}", node.lineno))
        arrows[name] = [a for a in found if a[0] != name]
        private_uses[name] = uses
    return arrows, private_uses


def layer_of(module: str) -> int:
    best, best_len = None, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    assert best is not None, f"module {module!r} has no layer: add it to LAYERS"
    return best


def phase_of(module: str) -> str | None:
    top = module.split(".")[0]
    return top if top in PHASES else None


ARROWS, PRIVATE_USES = read_imports()


def test_every_module_is_read_and_placed_in_a_layer():
    assert len(ARROWS) > 40
    for module in ARROWS:
        layer_of(module)


def test_there_is_no_import_circle():
    graph = {m: sorted({t for t, _, _ in arrows}) for m, arrows in ARROWS.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, []):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert circles == [], f"import circles: {circles}"


def test_no_module_imports_a_higher_layer():
    upward = [
        f"{m} ({LAYERS[layer_of(m)][0]}) -> {t} ({LAYERS[layer_of(t)][0]}), line {line}"
        for m, arrows in ARROWS.items() for t, _, line in arrows if layer_of(t) > layer_of(m)
    ]
    assert upward == [], "upward imports:\n" + "\n".join(upward)


def test_phase_packages_do_not_import_each_other():
    sideways = [
        f"{m} -> {t}, line {line}" for m, arrows in ARROWS.items() for t, _, line in arrows
        if phase_of(m) and phase_of(t) and phase_of(m) != phase_of(t)
    ]
    assert sideways == [], "a phase imports another phase:\n" + "\n".join(sideways)


def test_no_module_takes_another_modules_private_names():
    private = [
        f"{m} takes {t}.{n}, line {line}" for m, arrows in ARROWS.items() for t, names, line in arrows
        for n in names if n.startswith("_") and not n.startswith("__")
    ]
    private += [f"{m} uses {use}, line {line}" for m, uses in PRIVATE_USES.items() for use, line in uses]
    assert private == [], "private names used across modules:\n" + "\n".join(private)


def test_nothing_in_the_pipeline_imports_the_notebook_helpers():
    front = ("cli", "notebook", "colab", "teaching", "__main__", "__init__")
    users = [f"{m} -> {t}" for m, arrows in ARROWS.items() for t, _, _ in arrows
             if t.split(".")[0] in ("notebook", "colab", "teaching") and m.split(".")[0] not in front]
    assert users == []


@pytest.mark.parametrize("bad, expected", [
    ("import os\nfrom dasd_utils.report import build\n", "report.build"),
    ("from ..teacher import store\n", "teacher.store"),
])
def test_the_reader_resolves_imports(tmp_path, bad, expected):
    # The rule is only as good as the reader: absolute and relative imports land on the module they name.
    tree = ast.parse(bad)
    node = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)][0]
    base = resolve("das.stage", node.level, node.module)
    assert as_file_module(f"{base}.{node.names[0].name}") == expected
