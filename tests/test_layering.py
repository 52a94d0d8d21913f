"""pyl2d's imports form no circle, and the L2D rooms import only the rooms below them.

The graph is read from the source (every ``import`` statement, function-level ones too:
a lazy import is still a dependency), so it holds whatever a test happens to import."""
import ast
import pathlib
import warnings

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "pyl2d"

# The L2D rooms, lowest first: a module may import its own room and the ones before it.
# Modules at the root of pyl2d/l2d (private helpers such as _files) sit below every room.
L2D_ROOMS = ("data", "model", "memory", "decode", "evaluation", "pipeline")


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, pathlib.Path]:
    found = {_module_name(p): p for p in ROOT.rglob("*.py")}
    found["pyl2d._C"] = None  # the compiled extension (built or not): a module, imports nothing
    return found


def _imports(path: pathlib.Path, name: str, modules) -> set[str]:
    """The pyl2d modules ``path`` imports: ``from a import b`` counts as a.b where that is a
    module, else as a."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "pyl2d")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if base.split(".")[0] != "pyl2d":
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in modules else base)
    return {m for m in found if m != name}


def _graph():
    modules = _modules()
    return {name: _imports(path, name, modules) if path else set() for name, path in modules.items()}


def _cycle(graph) -> list[str] | None:
    """One import circle, as the list of modules around it, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node):
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_no_import_circle():
    circle = _cycle(_graph())
    assert circle is None, "import circle: " + " -> ".join(circle)


def test_the_circle_check_finds_a_circle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def _room(module: str) -> int | None:
    """A pyl2d.l2d module's room rank (-1 for the l2d root's private helpers), None outside l2d."""
    parts = module.split(".")
    if parts[:2] != ["pyl2d", "l2d"] or len(parts) < 3:
        return None
    return L2D_ROOMS.index(parts[2]) if parts[2] in L2D_ROOMS else -1


def test_every_l2d_module_is_in_a_room():
    loose = [m for m in _modules() if _room(m) == -1 and not m.split(".")[2].startswith("_")]
    assert not loose, f"public modules at the root of pyl2d/l2d (put them in a room): {loose}"


def test_rooms_import_only_the_rooms_below():
    wrong = []
    for module, imported in _graph().items():
        rank = _room(module)
        if rank is None:
            continue
        for target in imported:
            if target == "pyl2d.l2d":
                wrong.append(f"{module} imports the pyl2d.l2d package itself (import the room's module)")
            elif (target_rank := _room(target)) is not None and target_rank > rank:
                wrong.append(f"{module} ({L2D_ROOMS[rank] if rank >= 0 else 'root'}) imports {target} "
                             f"({L2D_ROOMS[target_rank]})")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_module_imports_a_moved_path():
    from pyl2d.l2d import _moved

    old = {f"pyl2d.l2d.{name}" for name in _moved.MOVED}
    users = sorted(f"{module} imports {target}" for module, imported in _graph().items() for target in imported
                   if target in old)
    assert not users, "\n".join(users)


@pytest.mark.parametrize("old", sorted(__import__("pyl2d.l2d._moved", fromlist=["MOVED"]).MOVED))
def test_moved_paths_import_with_one_warning(old):
    import importlib
    import sys

    from pyl2d.l2d import _moved

    full = f"pyl2d.l2d.{old}"
    sys.modules.pop(full, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(full)
        again = importlib.import_module(full)
    assert module is again is importlib.import_module(_moved.new_path(old))
    moved = [w for w in caught if issubclass(w.category, FutureWarning)]
    assert len(moved) == 1, [str(w.message) for w in caught]
    assert _moved.new_path(old) in str(moved[0].message)
    assert moved[0].filename == __file__  # the warning points at the importing line


def test_old_names_keep_working():
    """What 0.1.0 code imported: the package exports and the module paths the README used."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        from pyl2d.l2d.data import Catalog, load_folder, load_samples  # noqa: F401  (data was a module)
        from pyl2d.l2d.hidden import HiddenStateExtractor, load_model  # noqa: F401
        from pyl2d.l2d.memory import ItemMemory, build_memory, data_fingerprint  # noqa: F401
        from pyl2d.l2d.pipeline import EvalRun, run_eval  # noqa: F401
        from pyl2d.l2d.prompts import DEFAULT_PROMPT  # noqa: F401
        from pyl2d.l2d.recommender import L2DRecommender  # noqa: F401
    import pyl2d.l2d

    with pytest.warns(FutureWarning, match="pyl2d.l2d.decode.recommender"):
        import sys
        sys.modules.pop("pyl2d.l2d.recommender", None)
        vars(pyl2d.l2d).pop("recommender", None)
        assert pyl2d.l2d.recommender.L2DRecommender is pyl2d.l2d.L2DRecommender


def test_no_package_export_shadows_its_own_module():
    """``pkg.name`` must stay the module pkg/name.py: ``from pkg import name`` and
    ``import pkg.name as x`` both read the attribute, so a function exported under a module's
    name (evaluation's evaluate()) silently replaced the module for its importers."""
    import importlib

    shadowed = []
    for module, path in _modules().items():
        if path is None or path.name != "__init__.py":
            continue
        package = importlib.import_module(module)
        for child in path.parent.glob("*.py"):
            value = getattr(package, child.stem, None)
            if child.stem != "__init__" and value is not None and not hasattr(value, "__path__") \
                    and getattr(value, "__name__", None) != f"{module}.{child.stem}":
                shadowed.append(f"{module}.{child.stem} is {value!r:.80}, not the module")
    assert not shadowed, "\n".join(shadowed)
