"""The package layering the project keeps (README, "Layout"): generators <- trainers <-
orchestrator, evaluation reads only the generators and trainers' models, datasets and
checkpoint format, only orchestrator/ starts Ray, and the product never imports the
benchmarks or the experiments built on it. Checked on the source's imports, so a new import
that bends the direction fails here rather than in a review."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("generators", "trainers", "orchestrator", "evaluation", "tune_spaces")
# Built on the product, never imported by it (no package's ALLOWED names them).
BUILT_ON = ("benchmarks", "experiments")

# What each package may import from the project's other packages (a package may always
# import itself). An entry "pkg" allows every module of it; "pkg.mod" only that module.
ALLOWED: dict[str, set[str]] = {
    "generators": set(),
    "trainers": {"generators"},
    "evaluation": {"generators", "trainers.models", "trainers.data", "trainers.checkpoint_format"},
    "tune_spaces": {"generators"},  # epsilon grids in the generators' l2 units
    "orchestrator": {"generators", "trainers", "evaluation", "tune_spaces"},
}


def project_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import of one of the project's packages in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [(node.lineno, n) for n in names if n.split(".")[0] in PACKAGES + BUILT_ON]
    return found


def allowed(package: str, module: str) -> bool:
    if module.split(".")[0] == package:
        return True
    return any(module == rule or module.startswith(rule + ".") for rule in ALLOWED[package])


def sources(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_follow_the_layering(package: str) -> None:
    assert sources(package), f"no sources under {package}/"
    bad = [
        f"{path.relative_to(REPO)}:{line} imports {module}"
        for path in sources(package)
        for line, module in project_imports(path)
        if not allowed(package, module)
    ]
    assert not bad, "\n".join(bad)


def calls_ray_init(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        func = node.func if isinstance(node, ast.Call) else None
        if (
            isinstance(func, ast.Attribute)
            and func.attr == "init"
            and isinstance(func.value, ast.Name)
            and func.value.id == "ray"
        ):
            return True
    return False


def test_only_the_orchestrator_starts_ray() -> None:
    starters = {
        path.relative_to(REPO).parts[0]
        for package in PACKAGES
        for path in sources(package)
        if calls_ray_init(path)
    }
    assert starters == {"orchestrator"}


def test_the_checks_see_a_violation(tmp_path: Path) -> None:
    """The rules are not vacuous: the import a reviewer would object to is caught."""
    source = tmp_path / "bad.py"
    source.write_text(
        "from trainers.loop import run_worker\nimport ray\nray.init()\n"
        "from experiments.mnist import mnist_results\n"
    )
    assert project_imports(source) == [(1, "trainers.loop"), (4, "experiments.mnist")]
    assert not allowed("evaluation", "trainers.loop")
    assert not allowed("orchestrator", "experiments.mnist")
    assert not allowed("trainers", "benchmarks.bench_modes")
    assert not allowed("generators", "trainers.models")
    assert allowed("evaluation", "trainers.models")
    assert calls_ray_init(source)
