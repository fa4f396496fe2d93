"""r1cli's layers, as pyproject.toml's [tool.importlinter] contracts state them, checked by import-linter on
every run of the suite: commands > measurement > library > server, hub > client > the shared rules, no
import loops, the client alone, server/ and hub/ independent, the /metrics parser pure.

import-linter (grimp) counts imports inside functions too, but not `lazy_import("r1cli...")` (r1cli/lazy.py)
nor importlib calls: the lazy imports are checked here against the same floors. And a contract is only as
good as its coverage: every module at the package root must stand on a floor (status.py once stood on none,
and its loop with server/ went unseen)."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10: import-linter brings tomli
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "r1cli"
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
CONTRACTS = {c["id"]: c for c in CONFIG["contracts"]}
FLOORS = CONTRACTS["layers"]["layers"]

pytestmark = pytest.mark.timeout(120)


def lint_imports(cwd: Path, *extra_path: Path) -> subprocess.CompletedProcess:
    """`lint-imports` on r1cli as found from CWD (first on the path: EXTRA_PATH), against this checkout's
    contracts. No cache (it would be written into CWD); wide columns, so each contract's verdict is one line."""
    env = {**os.environ, "COLUMNS": "400"}
    if extra_path:
        env["PYTHONPATH"] = os.pathsep.join([*map(str, extra_path), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    code = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    return subprocess.run([sys.executable, "-c", code, "--no-cache", "--no-logo", str(ROOT / "pyproject.toml")],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=100)


def verdicts(output: str) -> dict[str, str]:
    """{contract id: "KEPT" | "BROKEN"} from lint-imports' summary lines."""
    by_name = {c["name"]: key for key, c in CONTRACTS.items()}
    found = {}
    for line in output.splitlines():
        m = re.fullmatch(r"(.+) (KEPT|BROKEN)(?: \(\d+ ignored imports?\))?", line.strip())
        if m and m.group(1) in by_name:
            found[by_name[m.group(1)]] = m.group(2)
    return found


def test_the_contracts_hold():
    proc = lint_imports(ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert verdicts(proc.stdout) == {key: "KEPT" for key in CONTRACTS}, proc.stdout


# --- what the contracts cannot see ------------------------------------------------------------------------


def _floor_groups() -> list[tuple[set[str], bool]]:
    """Each floor's top-level names (`answers`, `server`, ...) and whether they may import each other (":")."""
    groups = []
    for floor in FLOORS:
        independent = "|" in floor
        names = {part.strip().split(".", 1)[1] for part in re.split(r"[|:]", floor)}
        groups.append((names, not independent))
    return groups


def _top(module: str) -> str:
    """r1cli.server.status -> server; r1cli/options.py -> options."""
    return module.split(".")[1]


def _floor_of(top: str) -> int:
    return next(i for i, (names, _) in enumerate(_floor_groups()) if top in names)


def test_every_module_at_the_package_root_stands_on_a_floor():
    tops = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
            if (p.suffix == ".py" and p.stem != "__init__") or (p.is_dir() and (p / "__init__.py").exists())}
    placed = set().union(*(names for names, _ in _floor_groups()))
    assert tops - placed == set(), "add each to a floor of [tool.importlinter]'s layers contract in pyproject.toml"
    assert placed - tops == set(), "the layers contract names modules that are gone"


def test_lazy_imports_go_down_the_floors_too():
    """`lazy_import("r1cli.x")` is an import the first attribute read makes: it obeys the floors as a plain one."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        importer = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "lazy_import" and node.args
                    and isinstance(node.args[0], ast.Constant) and str(node.args[0].value).startswith("r1cli.")):
                found.append((importer, node.args[0].value))
    assert found, "no lazy_import found: is r1cli/lazy.py still used?"
    groups = _floor_groups()
    wrong = []
    for importer, imported in found:
        a, b = _top(importer), _top(imported)
        if a == b:
            continue  # within one package or module: acyclic_siblings' business, checked below
        fa, fb = _floor_of(a), _floor_of(b)
        if fa > fb or (fa == fb and not groups[fa][1]):
            wrong.append(f"{importer} -> {imported}")
    assert wrong == []


# --- and that they catch what they are for ------------------------------------------------------------------


@pytest.mark.parametrize("module, line, broken, reported", [
    # an upward import: the client reaching the commands (which import the client: a loop as well)
    ("client/http.py", "import r1cli.commands", {"layers", "client-alone", "no-loops"}, "r1cli.client.http -> r1cli.commands"),
    # the hub reading server records again (hub/cache.py once did)
    ("hub/cache.py", "from r1cli.server import state", {"layers", "server-hub"}, "r1cli.hub.cache -> r1cli.server.state"),
    # a loop inside server/: state <-> process
    ("server/state.py", "from r1cli.server import process", {"no-loops"}, ".state -> .process"),
    # the /metrics parser importing r1
    ("server/metrics.py", "from r1cli.errors import R1Error", {"metrics-pure"}, "r1cli.server.metrics -> r1cli.errors"),
    ("server/metrics.py", "from r1cli.server import devguard", {"metrics-pure"}, "r1cli.server.metrics -> r1cli.server.devguard"),
    # the middleware vLLM imports in each API server process reaching r1 (it imports keepalive alone)
    ("server/devguard.py", "from r1cli.errors import R1Error", {"in-vllm"}, "r1cli.server.devguard -> r1cli.errors"),
    ("server/keepalive.py", "from r1cli.server import state", {"in-vllm"}, "r1cli.server.keepalive -> r1cli.server.state"),
])
def test_a_contract_breaks_when_an_import_breaks_it(tmp_path, module, line, broken, reported):
    copy = tmp_path / "r1cli"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "demo_model"))
    with open(copy / module, "a", encoding="utf-8") as f:
        f.write(f"\n{line}  # added by the test\n")
    proc = lint_imports(tmp_path, tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    got = verdicts(proc.stdout)
    assert {key for key, verdict in got.items() if verdict == "BROKEN"} == broken, proc.stdout
    assert reported in proc.stdout
