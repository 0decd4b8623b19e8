"""The house's floors: the runtime never imports torch or the export tools; its sub-packages are layers
(core, models, io, methods, run, serve, cli) whose imports only go down, and its modules import each other without
a circle (so that any module, e.g. a worker's, can be imported first), imports by importlib string included."""
import ast
import re
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "litemedsam"


def is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


REFERENCE = re.compile(r"litemedsam(\.[a-z_0-9]+)+:[A-Za-z_]\w*")


def imported(node) -> set:
    """The modules an import statement names."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names}
    if not node.module:
        return set()
    # `from litemedsam import transforms` imports the module, not what the package's __init__ offers
    modules = {f"{node.module}.{a.name}" for a in node.names}
    return modules if all(is_module(m) for m in modules) else modules | {node.module}


def imports(references: bool = False) -> dict:
    """module -> the litemedsam modules it imports (at any depth of its code); with ``references``, also those its
    "module:attribute" strings name (the registry's runtime classes: imported when used, so no circle at load)."""
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                found.update(imported(node))
            elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) \
                    == "import_module" and node.args:  # importlib.import_module("litemedsam.x" or f"litemedsam.{x}")
                arg = node.args[0]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    found.add(arg.value)
                elif isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
                    found.add(arg.values[0].value + "*")  # any module whose name starts so
            elif references and isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and REFERENCE.fullmatch(node.value):
                found.add(node.value.partition(":")[0])  # the registry's "module:attribute" (imported when used)
        graph[name] = found
    for found in graph.values():
        for prefix in [m[:-1] for m in found if m.endswith("*")]:
            found.update(m for m in graph if m.startswith(prefix))
    return graph


def test_runtime_imports_neither_torch_nor_export():
    for module, found in imports().items():
        assert not {m for m in found if m.split(".")[0] in ("torch", "export", "benchmarks", "evaluation")}, module


def test_no_import_circle_in_the_runtime():
    graph = imports()
    edges = {m: {d for d in found if d in graph and d != m} for m, found in graph.items()}
    state = {}

    def visit(m, path):
        state[m] = "open"
        for d in edges[m]:
            assert state.get(d) != "open", "import circle: " + " -> ".join(path + [m, d])
            if d not in state:
                visit(d, path + [m])
        state[m] = "done"

    for m in sorted(edges):
        if m not in state:
            visit(m, [])


# the README's layout: the sub-packages (and top-level modules) in layers, lowest first; a module may import
# its own package, those of lower layers, and nothing above
LAYERS = ["core", "models", "io", "methods", "run", "serve api", "cli __main__"]
LAYER = {name: n for n, names in enumerate(LAYERS) for name in names.split()}


def package(module: str) -> str:
    """litemedsam.io.formats.nifti -> io; litemedsam.api -> api."""
    return module.split(".")[1]


def test_imports_go_down_the_layers():
    graph = imports(references=True)  # the registry's "module:Class" strings too: no arrow up by a string
    unplaced = sorted({package(m) for m in graph if "." in m} - set(LAYER))
    assert not unplaced, f"packages or modules in no layer (add them to LAYERS and the README's layout): {unplaced}"
    upward = sorted({(m, d) for m, found in graph.items() if "." in m for d in found
                     if d in graph and "." in d and LAYER[package(d)] > LAYER[package(m)]})
    assert not upward, f"imports going up a layer: {upward}"


def test_the_top_package_imports_no_module_at_load():
    """litemedsam/__init__.py offers the API lazily: importing any module never loads the others."""
    import ast as syntax

    tree = syntax.parse((PACKAGE / "__init__.py").read_text())
    assert not [n for n in tree.body if isinstance(n, (syntax.Import, syntax.ImportFrom))]


# the third-party modules the runtime may import beyond pyproject.toml's dependencies: each one's extra, which the
# code names in its message when the module is missing (tests/test_install.py runs those messages in a fresh venv)
EXTRA = {"onnx": "export", "SimpleITK": "io", "distributed": "cluster", "cloudpickle": "cluster", "starlette": "serve",
         "uvicorn": "serve", "blosc2": "serve"}
DISTRIBUTION = {"cv2": "opencv-python-headless", "tomli": "tomli"}


STDLIB_39 = {
    "__future__",
    "argparse",
    "ast",
    "asyncio",
    "collections",
    "colorsys",
    "concurrent",
    "contextlib",
    "contextvars",
    "csv",
    "dataclasses",
    "datetime",
    "enum",
    "errno",
    "fcntl",
    "functools",
    "gzip",
    "hashlib",
    "hmac",
    "importlib",
    "io",
    "itertools",
    "json",
    "logging",
    "math",
    "multiprocessing",
    "numbers",
    "os",
    "pathlib",
    "pickle",
    "pickletools",
    "platform",
    "queue",
    "random",
    "re",
    "resource",
    "secrets",
    "shutil",
    "signal",
    "socket",
    "stat",
    "struct",
    "subprocess",
    "sys",
    "tempfile",
    "threading",
    "time",
    "tomllib",
    "traceback",
    "typing",
    "unicodedata",
    "urllib",
    "uuid",
    "warnings",
    "zipfile",
    "zlib",
}  # Python 3.9 has no stdlib_module_names


def third_party_imports() -> dict:
    """top-level third-party module -> the runtime files importing it (at any depth of their code)."""
    import sys

    found = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
            for name in names:
                top = name.split(".")[0]
                if top not in getattr(sys, "stdlib_module_names", STDLIB_39) and top != "litemedsam":
                    found.setdefault(top, set()).add(path.relative_to(PACKAGE).as_posix())
    return found


def install_requires() -> set:
    """The distributions pyproject.toml's [project] dependencies name."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib
    listed = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["project"]["dependencies"]
    return {req.split(";")[0].split(">")[0].split("=")[0].split("<")[0].strip().lower() for req in listed}


def test_every_runtime_import_is_installed_or_its_extra_is_named():
    """Issue 33: SciPy was imported by the 2025 clicks but only installed by extras, so a plain install (and the
    Docker image) failed every click step. A module the runtime imports is a core dependency, or belongs to an
    extra that the code names where the import fails."""
    core = install_requires()
    for module, files in third_party_imports().items():
        if DISTRIBUTION.get(module, module).lower() in core:
            continue
        assert module in EXTRA, (
            f"{module} (imported by {sorted(files)}) is neither in pyproject.toml's dependencies nor an extra"
        )
        named = [f for f in files | {"cli/infer.py", "cli/serve.py"}
                 if re.search(rf"needs_extra\([^)]*\"{EXTRA[module]}\"", (PACKAGE / f).read_text())
                 or f"litemedsam[{EXTRA[module]}]" in (PACKAGE / f).read_text()]
        assert named, f"no message names the extra litemedsam[{EXTRA[module]}] that {module} needs"
