"""The layout is the architecture: imports run one way, from the bottom layer up, and never in a circle
(lazy imports inside functions included); no module outgrows one concept."""

import ast
from pathlib import Path

import tinygpt

SRC = Path(tinygpt.__file__).parent
# Bottom first: a module may import its own layer and the layers below it, never one above.
LAYERS = ["core", "config", "tokenizers", "data", "store", "model", "generation", "training", "objectives",
          "evaluation", "app", "convert", "viz", "serve", "demo", "lessons", "cli"]
MOST_LINES = 420  # "a module past ~400 lines is probably two"


def module_name(path: Path) -> str:
    parts = ["tinygpt", *path.relative_to(SRC).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_imports() -> dict[str, set[str]]:
    """Every module of the package -> the package's modules it imports, anywhere in its code."""
    modules = {module_name(p): p for p in SRC.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = here[: len(here) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                # `from . import x` imports the module x when there is one, else a name of the package.
                targets = [f"{target}.{a.name}" if f"{target}.{a.name}" in modules else target for a in node.names]
            else:
                continue
            found |= {t for t in targets if t in modules and t != name}
        graph[name] = found
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


def test_the_package_imports_in_no_circle():
    assert circles(package_imports()) == []


def test_the_circle_finder_finds_a_circle():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_import_runs_down_the_layers():
    upward = [f"{m} imports {t}" for m, targets in package_imports().items() for t in targets
              if layer(m) is not None and layer(t) is not None and layer(t) > layer(m)]
    assert upward == []


def test_every_part_of_the_package_has_its_layer():
    tops = {p.name.removesuffix(".py") for p in SRC.iterdir() if (p.suffix == ".py" or p.is_dir())
            and not p.name.startswith("__") and p.name not in ("presets", "resources")}
    assert tops == set(LAYERS)


def test_no_module_outgrows_one_concept():
    long = {str(p.relative_to(SRC)): n for p in SRC.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MOST_LINES}
    assert long == {}


def test_the_readmes_code_map_names_every_module_where_it_is():
    readme = (SRC.parents[1] / "README.md").read_text(encoding="utf-8")
    block = readme.split("## How the code is laid out", 1)[1].split("```", 2)[1]
    entries, current = {}, None
    for line in block.splitlines():
        if line.startswith("  ") and not line.startswith("   "):  # "  name/   text" or "  module.py   text"
            current = line.split()[0].rstrip("/")
            entries[current] = line
        elif current is not None and line.startswith("   "):
            entries[current] += line
    missing = []
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC).parts
        if len(parts) == 1:
            if path.name not in entries and path.name != "__main__.py":
                missing.append(path.name)
        elif path.name != "__init__.py" and path.name not in entries.get(parts[0], ""):
            missing.append("/".join(parts))
    assert missing == []
    assert set(LAYERS) <= {name.removesuffix(".py") for name in entries}
