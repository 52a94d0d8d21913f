"""The dispatch table (pyl2d/_backend.py: IMPLEMENTATIONS) is complete and resolves, and
no backend reaches back into the dispatcher or the reference it is tested against."""
import ast
import pathlib

import pytest

from pyl2d import _backend

PACKAGE = pathlib.Path(_backend.__file__).resolve().parent


def test_every_op_is_in_the_table():
    assert set(_backend.IMPLEMENTATIONS) == set(_backend.OPS)
    for op, table in _backend.IMPLEMENTATIONS.items():
        assert "torch" in table, f"{op} has no reference"
        assert set(table) <= set(_backend.BACKENDS)


@pytest.mark.parametrize("op", _backend.OPS)
def test_entries_name_the_module_and_function(op):
    for backend, target in _backend.IMPLEMENTATIONS[op].items():
        module, name = target.split(":")
        path = PACKAGE.parent / (module.replace(".", "/") + ".py")
        assert path.is_file(), f"{op}/{backend}: {path} is missing"
        tree = ast.parse(path.read_text())
        assert any(isinstance(n, ast.FunctionDef) and n.name == name for n in tree.body), f"{target} is not defined"


@pytest.mark.parametrize("op", _backend.OPS)
def test_reference_and_cpu_entries_import(op):
    assert callable(_backend.implementation(op, "torch"))
    if "cpu" in _backend.available("cpu", op):
        assert callable(_backend.implementation(op, "cpu"))


def _imports(path: pathlib.Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


@pytest.mark.parametrize("backend", ["cpu", "triton", "cuda"])
def test_backends_import_neither_the_dispatcher_nor_the_reference(backend):
    ops = PACKAGE / "ops"
    files = sorted(ops.glob(f"*/{backend}.py")) + sorted(ops.glob(f"*/_{backend}*.py"))
    files += sorted((ops / "_rewards").glob("*.py")) + [ops / "local_topk" / "_stages.py",
                                                        PACKAGE / "_fallbacks.py", PACKAGE / "_topk.py"]
    assert len(files) > 9
    for path in files:
        bad = {n for n in _imports(path) if ".reference" in n or n.startswith("pyl2d._backend")}
        assert not bad, f"{path.relative_to(PACKAGE.parent)} imports {sorted(bad)}"
