"""The core install stays light and the package's structure stays clean.

- ``import vq_hf`` (quantizer forward/backward, a model saved and loaded) works without any optional package and
  imports none of them: simulated here by making every package of the extras unimportable, and checked for real
  in a fresh virtual environment (slow);
- the package's own imports form no circle (module-level and function-level imports alike);
- no constant, function or class is defined in two modules.
"""

from __future__ import annotations

import ast
import importlib.metadata
import os
import pathlib
import re
import shutil
import subprocess
import sys
import textwrap
import tomllib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = SRC / "vq_hf"

# Distribution names whose import name differs.
_IMPORT_NAMES = {
    "pyyaml": "yaml",
    "pillow": "PIL",
    "scikit-learn": "sklearn",
    "fonttools": "fontTools",
    "kaldi-native-fbank": "kaldi_native_fbank",
    "vector-quantize-pytorch": "vector_quantize_pytorch",
    "pytest-timeout": "pytest_timeout",
}


def _dist_name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement.strip(), maxsplit=1)[0].lower()


def _import_name(dist: str) -> str:
    return _IMPORT_NAMES.get(dist, dist.replace("-", "_"))


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def optional_imports() -> set[str]:
    """Import names of every package the extras add to the core install (read from pyproject.toml)."""
    project = _pyproject()["project"]
    core = {_dist_name(r) for r in project["dependencies"]}
    extras = {
        _dist_name(r)
        for reqs in project["optional-dependencies"].values()
        for r in reqs
        if not _dist_name(r).startswith("vq-hf")
    }
    return {_import_name(d) for d in extras - core}


def _required_by_transformers() -> set[str]:
    """transformers' own required packages (it imports e.g. yaml and tqdm itself, so they cannot be absent)."""
    reqs = importlib.metadata.requires("transformers") or []
    return {_import_name(_dist_name(r)) for r in reqs if "extra ==" not in r}


def test_extras_are_the_documented_ones():
    project = _pyproject()["project"]
    assert {_dist_name(r) for r in project["dependencies"]} == {
        "torch", "transformers", "huggingface_hub", "safetensors", "numpy", "pillow"
    }
    extras = project["optional-dependencies"]
    assert set(extras) == {"train", "speech", "standins", "bench", "test", "all"}
    assert {_dist_name(r) for r in extras["train"]} >= {
        "accelerate", "datasets", "evaluate", "tensorboard", "matplotlib", "pyyaml", "tqdm"
    }
    assert extras["all"] == ["vq-hf[train,speech,standins,bench,test]"]
    torch_req = next(r for r in project["dependencies"] if _dist_name(r) == "torch")
    assert "<" in torch_req, "torch stays capped so that a resolver never pulls a CUDA build by accident"


# The light-install script: everything a user of the layer alone does, then the check of sys.modules.
LIGHT_SCRIPT = textwrap.dedent(
    """
    import json, sys, tempfile
    BLOCKED = json.loads(sys.argv[1])
    for name in BLOCKED:  # as if not installed: importlib.util.find_spec answers None, `import` fails
        sys.modules[name] = None
    import torch, vq_hf
    from vq_hf import VectorQuantizer, VQVAEConfig, VQVAEModel

    torch.manual_seed(0)
    vq = VectorQuantizer(dim=8, codebook_size=16, quantizer_type="ema", batch_norm=True)
    x = torch.randn(32, 8, requires_grad=True)
    out = vq(x)
    (out.loss + out.quantized.square().sum()).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and out.codes.shape == (32, 1)

    model = VQVAEModel(VQVAEConfig()).eval()
    pixels = torch.rand(2, 3, 32, 32) - 0.5
    with torch.no_grad():
        before = model(pixel_values=pixels)
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        loaded = VQVAEModel.from_pretrained(folder).eval()
    with torch.no_grad():
        after = loaded(pixel_values=pixels)
    assert torch.equal(before.codes, after.codes)

    CHECK = json.loads(sys.argv[2])
    loaded_optional = sorted(m for m in CHECK if sys.modules.get(m) is not None)
    print(json.dumps(loaded_optional))
    """
)


def _run_light(python: str, blocked: list[str], check: list[str], env: dict | None = None) -> list[str]:
    import json

    proc = subprocess.run(
        [python, "-c", LIGHT_SCRIPT, json.dumps(blocked), json.dumps(check)],
        capture_output=True, text=True, timeout=600, env=env, cwd=str(ROOT.parent),
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_import_vq_hf_needs_no_optional_package():
    optional = optional_imports()
    assert {"matplotlib", "tensorboard", "datasets", "accelerate", "sklearn", "kaldiio", "soundfile"} <= optional
    # transformers imports its own requirements (yaml, tqdm); the AST test below keeps them out of vq_hf's imports.
    blocked = sorted(optional - _required_by_transformers())
    check = sorted(optional)
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    loaded = _run_light(sys.executable, blocked, check, env)
    assert set(loaded) <= _required_by_transformers(), loaded


# ---------------------------------------------------------------------------------------------- import graph


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, pathlib.Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: pathlib.Path, modules: dict[str, pathlib.Path], module_level_only: bool):
    """(vq_hf modules imported, third-party top-level names imported) by one file."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(), filename=str(path))
    if module_level_only:
        nodes = []
        stack = list(tree.body)
        while stack:  # statements of the module body, also inside if / try blocks, not inside defs
            node = stack.pop()
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            nodes.append(node)
            for field in ("body", "orelse", "finalbody", "handlers"):
                stack.extend(getattr(node, field, []) or [])
    else:
        nodes = list(ast.walk(tree))
    internal, external = set(), set()

    def add(target: str):
        if target.split(".")[0] == "vq_hf":
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                internal.add(target)
        else:
            external.add(target.split(".")[0])

    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                root = ".".join(base + ([node.module] if node.module else []))
            else:
                root = node.module
            if root == "__future__":
                continue
            for alias in node.names:
                full = f"{root}.{alias.name}"
                add(full if full in modules else root)
    return internal, external


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _graph(module_level_only: bool) -> dict[str, set[str]]:
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        graph[name] = _imports(path, modules, module_level_only)[0]
    return graph


def test_no_import_circles():
    graph = _graph(module_level_only=False)  # lazy imports inside functions count: they are circles too
    cycles = _cycles(graph)
    assert not cycles, f"import circles among vq_hf modules: {cycles}"


def test_import_graph_detects_a_circle():
    # The checker itself: two modules importing each other lazily form a component.
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_modules_reached_by_import_vq_hf_import_no_optional_package_at_module_level():
    modules = _modules()
    optional = optional_imports() | {"triton"}
    seen, todo, offenders = set(), ["vq_hf"], {}
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        internal, external = _imports(modules[name], modules, module_level_only=True)
        if external & optional:
            offenders[name] = sorted(external & optional)
        todo.extend(internal)
    assert {"vq_hf.quantization.quantizer", "vq_hf.models"} <= seen
    # fused_search imports triton inside try/except at module level, but is itself imported only on first use.
    assert "vq_hf.quantization.fused_search" not in seen
    assert not offenders, f"optional packages imported at module level by `import vq_hf`: {offenders}"


# ---------------------------------------------------------------------------------------------- one definition

# Public names that each module defines for itself by a contract, not copies of one fact: `vq-hf <command>` calls
# `<module>.cli(argv)`, and each command module builds its own argparse parser.
ALLOWED_REPEATS = {"cli", "build_parser"}


def _definitions(path: pathlib.Path) -> dict[str, str]:
    """Top-level functions, classes and UPPERCASE constants of one module: name -> the definition's AST dump."""
    out = {}
    for node in ast.parse(path.read_text(), filename=str(path)).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out[node.name] = ast.dump(ast.Module(body=node.body, type_ignores=[]))
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                if isinstance(t, ast.Name) and t.id.lstrip("_").isupper():
                    out[t.id] = ast.dump(node.value)
    return {n: d for n, d in out.items() if not (n.startswith("__") and n.endswith("__"))}


def _repeats() -> dict[str, list[str]]:
    """Names defined in more than one module: every public one (one name, one meaning), and private ones whose
    definitions are identical (a module's own `_DESCRIPTION` text or layer defaults may share a name)."""
    where: dict[str, dict[str, str]] = {}
    for name, path in _modules().items():
        for d, dump in _definitions(path).items():
            where.setdefault(d, {})[name] = dump
    out = {}
    for d, defs in where.items():
        if len(defs) < 2 or d in ALLOWED_REPEATS:
            continue
        if not d.startswith("_") or len(set(defs.values())) < len(defs):
            out[d] = sorted(defs)
    return out


def test_no_constant_or_helper_defined_twice():
    repeats = _repeats()
    assert not repeats, f"defined in more than one module: {repeats}"


def test_the_known_facts_live_in_one_place():
    where: dict[str, list[str]] = {}
    for name, path in _modules().items():
        for d in _definitions(path):
            where.setdefault(d, []).append(name)
    assert where["QUANTIZER_TYPES"] == ["vq_hf.quantization.quantizer"]
    assert where["LN2"] == ["vq_hf.metrics.bits"]
    assert where["ctc_greedy_decode"] == ["vq_hf.metrics.ctc"]
    assert where["code_histogram"] == ["vq_hf.quantization.metrics"]
    assert where["SEARCH_BACKENDS"] == ["vq_hf.quantization.search"]
    assert "vq_hf.profiling" not in _modules()


def test_the_repeat_check_can_fail(tmp_path, monkeypatch):
    pkg = tmp_path / "vq_hf"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("LN2 = 0.69\n_X = 1\n_Y = 1\ndef cli(argv):\n    return 0\n")
    (pkg / "b.py").write_text("LN2 = 0.69\n_X = 1\n_Y = 2\ndef cli(argv):\n    return 1\n")
    monkeypatch.setattr(sys.modules[__name__], "SRC", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", pkg)
    assert _repeats() == {"LN2": ["vq_hf.a", "vq_hf.b"], "_X": ["vq_hf.a", "vq_hf.b"]}


# ---------------------------------------------------------------------------------------------- missing extras


def test_a_loader_without_its_extra_names_the_install_command():
    code = textwrap.dedent(
        """
        import sys
        sys.modules["datasets"] = None  # as if `pip install vq-hf` without [train]
        from vq_hf._extras import MissingExtraError
        from vq_hf.data import load_cifar10
        try:
            load_cifar10()
        except MissingExtraError as err:
            print(err)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(SRC)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith('is not installed: pip install "vq-hf[train]"'), proc.stdout
    assert "'datasets'" in proc.stdout


def test_the_cli_prints_a_missing_extra_as_one_line(tmp_path, monkeypatch, capsys):
    from vq_hf import cli

    (tmp_path / "needs_extra_cmd.py").write_text(
        "from vq_hf._extras import require\n"
        "def cli(argv):\n"
        "    require('no_such_package_xyz', 'speech', 'the test command')\n"
    )
    (tmp_path / "top_import_cmd.py").write_text("import no_such_package_abc\ndef cli(argv):\n    return 0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(cli.COMMANDS, "needs-extra", ("needs_extra_cmd", "train", "test"))
    monkeypatch.setitem(cli.COMMANDS, "top-import", ("top_import_cmd", "standins", "test"))
    assert cli.main(["needs-extra"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["vq-hf needs-extra: the package 'no_such_package_xyz' (needed for the test command) is not "
                   'installed: pip install "vq-hf[speech]"'], err
    assert cli.main(["top-import"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["vq-hf top-import: the package 'no_such_package_abc' is not installed: "
                   'pip install "vq-hf[standins]"'], err


def test_require_names_the_extra_and_stays_an_import_error():
    from vq_hf._extras import MissingExtraError, require

    assert require("json", "train").dumps([1]) == "[1]"
    with pytest.raises(ImportError, match=r'package \'no_such_package_xyz\' \(needed for tests\) is not installed: '
                                          r'pip install "vq-hf\[speech\]"') as info:
        require("no_such_package_xyz", "speech", "tests")
    assert isinstance(info.value, MissingExtraError)


# ---------------------------------------------------------------------------------------------- a real install


@pytest.mark.slow
def test_fresh_venv_core_install(tmp_path):
    """`pip install .` without extras in a new virtual environment (the CPU torch wheel first, as setup.sh does:
    with torch==2.13.0 already there pip never resolves a CUDA build), then the light-install script."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run(pip + ["torch==2.13.0"], check=True, timeout=1800)
    # A copy of what the package is built from: setuptools builds in-tree and never empties build/, so a stale
    # module there (e.g. one moved out of the package) would otherwise ship in the wheel.
    project = tmp_path / "project"
    junk = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    shutil.copytree(SRC, project / "src", ignore=junk)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, project / name)
    subprocess.run(pip + [str(project)], check=True, timeout=1800, cwd=str(tmp_path))
    python = str(venv / "bin" / "python")
    version = subprocess.run([python, "-c", "import torch; print(torch.__version__)"], capture_output=True,
                             text=True, check=True).stdout.strip()
    assert version.startswith("2.13.0") and "+cu" not in version, version
    installed = subprocess.run([python, "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True,
                               check=True).stdout.lower()
    present = {line.split("==")[0] for line in installed.splitlines()}
    optional = optional_imports()
    assert not {"accelerate", "datasets", "matplotlib", "tensorboard", "scikit-learn", "kaldiio"} & present, present
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the installed copy, not src/
    where = subprocess.run([python, "-c", "import vq_hf, os; print(os.path.dirname(vq_hf.__file__))"],
                           capture_output=True, text=True, check=True, env=env, cwd=str(tmp_path)).stdout.strip()
    assert where.startswith(str(venv)) and not os.path.exists(os.path.join(where, "profiling.py")), where
    loaded = _run_light(python, [], sorted(optional), env)
    assert set(loaded) <= _required_by_transformers(), loaded
