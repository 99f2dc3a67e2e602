"""The layout's rules, read from the source with ast: no import cycles (annotations included), no import from a lower
layer to a higher one, project imports inside functions only in the CLI (to keep `ganops --help` instant), functions
of at most 60 lines and modules of at most 400."""

import ast
from pathlib import Path

import pytest

from components.core.imports import closure, find_cycle, import_graph

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("components", "flows")

# Lower numbers are lower layers; a module may import from its own layer (same package) or below. The "parts"
# (pure building blocks registered by name, which the config's allowed values come from) sit below the config.
LAYERS = {
    "components": 0,
    "components.core": 0,
    "components.training.networks": 1,
    "components.promotion.rules": 1,
    "components.training.losses": 1,
    "components.training.augment": 1,
    "components.training.regularizers": 1,
    "components.training.optimizers": 1,
    "components.evaluation.frechet": 1,
    "components.evaluation.domain": 1,
    "components.evaluation.inception": 1,
    "components.evaluation.extractors": 1,
    "components.config": 2,
    "components.presets": 2.5,  # reads a preset or YAML file into the config
    "components.data": 3,
    "components.validation": 4,
    "components.training": 5,
    "components.registry": 6,
    "components.evaluation": 7,
    "components.promotion": 9,
    "components.serving": 8,
    "components.synthesis": 9.5,  # samples verified exports (serving), judges them with evaluation's parts
    "components.lineage": 10,
    "components.orchestration": 11,
    "flows": 12,
}
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 400


def layer_of(module: str) -> tuple[int, str]:
    """(layer, the LAYERS key that decided it): the longest matching prefix."""
    parts = module.split(".")
    for i in range(len(parts), 0, -1):
        key = ".".join(parts[:i])
        if key in LAYERS:
            return LAYERS[key], key
    raise AssertionError(f"{module} is in no layer: add it to LAYERS in {__file__}")


def stage_of(module: str) -> str:
    """components.evaluation.domain -> components.evaluation; flows.cli -> flows."""
    parts = module.split(".")
    return ".".join(parts[:2] if parts[0] == "components" else parts[:1])


def upward_imports(graph) -> list[str]:
    bad = []
    for module, edges in graph.items():
        mine, my_key = layer_of(module)
        for target, line in edges:
            theirs, their_key = layer_of(target)
            same_stage = stage_of(module) == stage_of(target)
            if theirs > mine or (theirs == mine and not same_stage and mine > 0):
                bad.append(f"{module}:{line} imports {target} (layer {their_key}={theirs} over {my_key}={mine})")
    return bad


@pytest.fixture(scope="module")
def graph():
    # With the imports made for annotations alone: a circle of types is a circle of the design.
    return import_graph(REPO, PACKAGES, type_only=True)


def test_no_import_cycles(graph):
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_import_from_a_lower_layer_to_a_higher_one(graph):
    assert upward_imports(graph) == []


def test_the_checks_catch_what_they_look_for():
    # A test that cannot fail is a defect: both checks flag a planted violation.
    planted = {"components.core.x": [("components.evaluation.evaluate", 3)], "components.evaluation.evaluate": [("components.core.x", 1)]}
    assert find_cycle(planted) and upward_imports(planted) == [
        "components.core.x:3 imports components.evaluation.evaluate (layer components.evaluation=7 over components.core=0)"
    ]


def test_project_imports_inside_functions_only_in_the_cli():
    offenders = []
    for path in sorted(p for package in PACKAGES for p in (REPO / package).rglob("*.py")):
        if path.parent == REPO / "flows" / "cli":
            continue  # commands import components lazily so `ganops --help` does not load torch
        for func in ast.walk(ast.parse(path.read_text())):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(func):
                names = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else ([node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                )
                offenders += [f"{path.relative_to(REPO)}:{node.lineno} {name}" for name in names if name.split(".")[0] in PACKAGES]
    assert offenders == []


def test_functions_and_modules_are_short():
    long = []
    for path in sorted(p for package in PACKAGES for p in (REPO / package).rglob("*.py")):
        lines = path.read_text().splitlines()
        if len(lines) > MAX_MODULE_LINES:
            long.append(f"{path.relative_to(REPO)} ({len(lines)} lines)")
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES:
                long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert long == []


def test_registered_models_carry_only_the_loader_code(tmp_path):
    from components.serving.mlflow_model import LOADER_MODULE, model_code_files

    package = model_code_files(tmp_path)
    shipped = {p.relative_to(tmp_path).as_posix() for p in package.rglob("*.py")}
    assert "components/training/weights.py" in shipped and "components/training/networks.py" in shipped
    assert not any(part in name for name in shipped for part in ("evaluation", "registry", "flows", "engine", "config"))
    assert len(shipped) == len(closure(import_graph(REPO, PACKAGES), LOADER_MODULE))  # what runs
