"""The package's shape: one namespace, layers that import only downward, one home for the format."""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tritonforge.ensembles.library import RAW, STEP_PARAMETER, STEPS, load_template

ROOT = Path(__file__).resolve().parents[1]
# Where each tritonforge subpackage lives in the checkout (pyproject.toml maps them in).
PACKAGES = {
    "tritonforge": ROOT / "tritonforge",
    "tritonforge.converters": ROOT / "converters",
    "tritonforge.ensembles": ROOT / "ensembles",
    "tritonforge.serving": ROOT / "serving",
    "tritonforge.clients": ROOT / "clients",
    "tritonforge.loadtests": ROOT / "loadtests",
}
# Lowest first: a layer may import its own layer and those below it, never one above.
LAYERS = [
    {"tritonforge.errors", "tritonforge.repository"},
    {"tritonforge.sidecar", "tritonforge.verify"},
    {"tritonforge.converters", "tritonforge.ensembles", "tritonforge.clients"},
    {"tritonforge.builder", "tritonforge.serving", "tritonforge.loadtests", "tritonforge.fleet"},
    {"tritonforge.tuning", "tritonforge.versions", "tritonforge.comparing"},
]


def _module_files():
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            if "steps" in path.parts and path.parent.name == "steps":
                continue  # step templates import nothing of tritonforge (checked below)
            parts = path.relative_to(folder).with_suffix("").parts
            parts = parts[:-1] if parts[-1] == "__init__" else parts
            if package == "tritonforge" and (not parts or f"tritonforge.{parts[0]}" in PACKAGES):
                continue  # the namespace's own __init__ (a docstring), and folders mapped in above
            yield ".".join((package, *parts)), path


def _imports(module: str, path: Path) -> set[str]:
    found = set()
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.add(name)
            found |= {f"{name}.{a.name}" for a in node.names}
    return {n for n in found if n.startswith("tritonforge.")}


def _layer(module: str) -> int | None:
    for index, layer in enumerate(LAYERS):
        if any(module == top or module.startswith(top + ".") for top in layer):
            return index
    return None


MODULES = dict(_module_files())


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_a_higher_layer(module):
    own = _layer(module)
    assert own is not None, f"{module} is in no layer: add it to LAYERS"
    upward = sorted(name for name in _imports(module, MODULES[module]) if (_layer(name) or 0) > own)
    assert upward == [], f"{module} (layer {own}) imports a higher layer: {upward}"


def test_converters_and_ensembles_do_not_import_each_other():
    for module, path in MODULES.items():
        for lower, other in (("tritonforge.converters", "tritonforge.ensembles"), ("tritonforge.ensembles", "tritonforge.converters")):
            if module.startswith(lower):
                assert not any(n.startswith(other) for n in _imports(module, path)), module


def test_no_import_loops():
    graph = {m: {n for n in _imports(m, p) if n in MODULES} for m, p in MODULES.items()}
    # Importing a package runs its __init__: a submodule's import of its own package's
    # __init__ is not a loop unless the __init__ leads back to it.
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in graph[node]:
            if state.get(nxt) == 1 and not node.startswith(nxt + "."):
                raise AssertionError("import loop: " + " -> ".join(stack[stack.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_only_the_tritonforge_namespace_is_installed():
    script = ("import importlib.util, tritonforge.clients, tritonforge.builder, tritonforge.serving\n"
              "print([m for m in ('clients', 'serving', 'converters', 'ensembles', 'loadtests') "
              "if importlib.util.find_spec(m) is not None])")
    done = subprocess.run([sys.executable, "-c", script], cwd="/", capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_one_dtype_table_in_the_package():
    """The KServe names of every dtype are spelled in one table, in tritonforge/repository/dtypes.py."""
    spelled = []
    for module, path in MODULES.items():
        if re.search(r'"FP32"|"TYPE_FP32":|mc\.TYPE_FP32', path.read_text()):
            spelled.append(module)
    assert spelled == ["tritonforge.repository.dtypes"]


def test_one_samples_reader_and_writer():
    """Only tritonforge/repository/samples.py knows samples.npz's keys (``input/<name>``, ``output/<name>``)."""
    users = sorted(m for m, p in MODULES.items() if re.search(r"""startswith\(["'](in|out)put/|\bf?["'](in|out)put/\{""", p.read_text()))
    assert users == []


PYTHON_STEPS = sorted(name for name, step in STEPS.items() if step.template.is_file())  # classify is Triton's own


def test_every_step_but_classify_runs_a_python_template():
    assert PYTHON_STEPS == sorted(set(STEPS) - {"classify"})


@pytest.mark.parametrize("name", PYTHON_STEPS)
def test_step_templates_repeat_the_shared_names(name):
    """Templates stay self-contained for the NGC image; their copies of shared names must agree."""
    template = load_template(name)
    assert template.STEP_PARAMETER == STEP_PARAMETER
    if STEPS[name].role == "preprocess":
        assert template.RAW_INPUT == RAW
    assert "tritonforge" not in {n.split(".")[0] for n in _plain_imports(STEPS[name].template)}


def _plain_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_pyproject_lists_every_package():
    """A package missing from pyproject.toml's list works in the checkout and is absent from a plain install."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join((package, *init.parent.relative_to(folder).parts))
             for package, folder in PACKAGES.items() for init in folder.rglob("__init__.py")
             if not (package == "tritonforge" and init.parent != folder and f"tritonforge.{init.relative_to(folder).parts[0]}" in PACKAGES)}
    assert found == listed
