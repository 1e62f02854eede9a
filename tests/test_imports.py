"""The package's import structure: no import cycle and no upward import, module-level or inside functions.

Every ``seglib`` module is parsed (not imported); each ``import``/``from ... import`` of a seglib module, wherever it
stands, is an edge. Layers, lowest first (docs/architecture.md draws them): a module may import its own package and
any lower layer, never a higher one or a sibling package of its own layer.
"""

import ast
from pathlib import Path

import pytest

SEGLIB = Path(__file__).resolve().parent.parent / "seglib"

LAYERS = [
    {"seglib._torchvision_guard", "seglib.registry", "seglib.tensors", "seglib.config", "seglib.runtime"},
    {"seglib.recipes"},
    {"seglib.data"},
    {"seglib.models"}, {"seglib.losses"}, {"seglib.metrics"},
    {"seglib.train", "seglib.inspect", "seglib.predict", "seglib.export"},
    {"seglib.integrations"},
    {"seglib.deploy"},
    {"seglib.experiment"},
    {"seglib.tune"},
    {"seglib.segmentation", "seglib.depthseg", "seglib.hparam"},
    {"seglib.nbrun", "seglib.launch", "seglib"},
]
# losses and metrics are separate layers only so that neither imports the other; models, losses and metrics
# depend on nothing but the base layer.
RANK = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}
FORBIDDEN = {("seglib.losses", "seglib.models"), ("seglib.metrics", "seglib.models"),
             ("seglib.metrics", "seglib.losses")}  # lower by rank only: these never import each other


def module_name(path: Path) -> str:
    rel = path.relative_to(SEGLIB.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def unit(name: str) -> str:
    """The layer unit of a module: ``seglib.data.io`` -> ``seglib.data``; top-level modules are their own unit."""
    parts = name.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else "seglib"


def imports_of(path: Path) -> set[str]:
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "seglib"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "seglib":
                continue
            for a in node.names:  # "from . import x" may name a submodule
                sub = f"{target}.{a.name}"
                found.add(sub if (SEGLIB.parent / sub.replace(".", "/")).with_suffix(".py").exists()
                          or (SEGLIB.parent / sub.replace(".", "/")).is_dir() else target)
    found.discard(name)
    return found


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in sorted(SEGLIB.rglob("*.py"))}


def test_every_unit_has_a_layer():
    units = {unit(m) for m in graph()}
    assert units <= set(RANK), f"give these a layer in LAYERS: {sorted(units - set(RANK))}"


def test_no_upward_or_sideways_import():
    bad = []
    for mod, targets in graph().items():
        for t in targets:
            a, b = unit(mod), unit(t)
            if a == b or a not in RANK or b not in RANK:  # test_every_unit_has_a_layer reports those
                continue
            if RANK[b] >= RANK[a] or (a, b) in FORBIDDEN:
                bad.append(f"{mod} imports {t}")
    assert not bad, "imports against the layers:\n" + "\n".join(sorted(bad))


def test_no_import_cycle():
    g = graph()
    state, stack, cycles = {}, [], []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for t in sorted(g.get(m, ())):
            if t not in g:
                continue
            if state.get(t) == 1:
                cycles.append(" -> ".join(stack[stack.index(t):] + [t]))
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m)
    # a package __init__ importing its own submodules, which import siblings by module, is not a cycle;
    # a submodule importing its package __init__ back is
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize("path", sorted(SEGLIB.rglob("*.py")), ids=lambda p: str(p.relative_to(SEGLIB)))
def test_module_size(path):
    n = len(path.read_text().splitlines())
    assert n <= 400, f"{path} has {n} lines; split it by what it holds (limit 400)"
