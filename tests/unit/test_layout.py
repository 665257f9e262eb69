"""The layout of worker/ holds: parts on floors, no import running up, no circle, a contract alone.

The imports are read from the source with :mod:`ast`, every one of them: at module level, inside
functions (the CLI's deferred imports) and under ``TYPE_CHECKING``, since each is a dependency a
reader has to follow. A new folder or top-level module fails the first test until it is given a
floor here.
"""

from __future__ import annotations

import ast
import graphlib
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "worker"

#: The parts of the worker, highest floor first. A part may import the parts on the floors below
#: its own, never one above; parts that share a floor are independent and import neither way.
FLOORS: tuple[tuple[str, ...], ...] = (
    # The doors: the CLI, and the job models at the path producers import them from.
    ("worker.__main__", "worker.jobs"),
    # The composition root, which builds and runs everything; the local stack of the demo.
    ("worker.service", "worker.local"),
    # What an operator runs and reads; the import command, a producer like any other.
    ("worker.operations", "worker.importer"),
    # One message's way from receive to delete.
    ("worker.pipeline",),
    # The Cognito side and its pacing; the producer library users install.
    ("worker.cognito", "worker.producer"),
    # What every part reads: the settings, and the logs and metrics it records into.
    ("worker.settings", "worker.telemetry"),
    # The wire contract.
    ("worker.contract",),
)

#: Parts that may import nothing of the worker's but their own modules and these parts.
MAY_IMPORT_ONLY: Mapping[str, frozenset[str]] = {
    "worker.contract": frozenset(),
    "worker.producer": frozenset({"worker.contract"}),
    "worker.importer": frozenset({"worker.contract", "worker.producer"}),
    "worker.local": frozenset(),
}


def module_name(path: Path, package: Path) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, name: str, known: set[str]) -> Iterator[str]:
    """The worker's modules that the file at ``path`` (module ``name``) imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            # `from worker.cognito import breaker` imports the module worker.cognito.breaker.
            targets = [
                f"{module}.{alias.name}" if f"{module}.{alias.name}" in known else module
                for alias in node.names
            ]
        else:
            continue
        yield from (target for target in targets if target in known and target != name)


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Each module of the package, and the package's modules it imports."""
    files = {module_name(path, package): path for path in sorted(package.rglob("*.py"))}
    known = set(files)
    return {name: set(imported_modules(path, name, known)) for name, path in files.items()}


def part_of(module: str) -> str | None:
    """The part a module belongs to: its folder under worker/, or itself at the top."""
    names = module.split(".")
    return ".".join(names[:2]) if len(names) > 1 else None


def part_graph(modules: Mapping[str, set[str]]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, targets in modules.items():
        part = part_of(module)
        if part is None:
            continue
        graph.setdefault(part, set())
        graph[part] |= {p for p in map(part_of, targets) if p is not None and p != part}
    return graph


def circle(graph: Mapping[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` (its first node repeated at the end), or None."""
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as error:
        found: list[str] = error.args[1]
        return found
    return None


def upward_imports(parts: Mapping[str, set[str]]) -> list[str]:
    """Every import of a part on a floor above the importer's, or beside it."""
    floor = {part: level for level, names in enumerate(FLOORS) for part in names}
    wrong = []
    for part, targets in sorted(parts.items()):
        for target in sorted(targets):
            if floor[target] < floor[part]:
                wrong.append(f"{part} imports {target}, a floor above it")
            elif floor[target] == floor[part]:
                wrong.append(f"{part} imports {target}, beside it on its floor")
    return wrong


def forbidden_imports(modules: Mapping[str, set[str]]) -> list[str]:
    wrong = []
    for module, targets in sorted(modules.items()):
        part = part_of(module)
        if part not in MAY_IMPORT_ONLY:
            continue
        allowed = MAY_IMPORT_ONLY[part] | {part}
        wrong += [
            f"{module} imports {target}"
            for target in sorted(targets)
            if part_of(target) not in allowed
        ]
    return wrong


@pytest.fixture(scope="module")
def modules() -> dict[str, set[str]]:
    return import_graph()


def test_every_part_has_a_floor(modules: dict[str, set[str]]) -> None:
    placed = {part for names in FLOORS for part in names}
    found = {part for part in map(part_of, modules) if part is not None}
    assert found - placed == set(), "give each new part a floor in FLOORS"
    assert placed - found == set(), "FLOORS names a part that is gone"


def test_no_circle_between_files(modules: dict[str, set[str]]) -> None:
    assert circle(modules) is None


def test_no_circle_between_folders(modules: dict[str, set[str]]) -> None:
    assert circle(part_graph(modules)) is None


def test_no_part_imports_one_above_it_or_beside_it(modules: dict[str, set[str]]) -> None:
    assert upward_imports(part_graph(modules)) == []


def test_the_contract_imports_nothing_of_the_workers(modules: dict[str, set[str]]) -> None:
    contract = {m: t for m, t in modules.items() if part_of(m) == "worker.contract"}
    assert contract, "the contract's modules were not found"
    assert forbidden_imports(contract) == []


def test_producer_importer_and_local_stack_import_only_what_they_declare(
    modules: dict[str, set[str]],
) -> None:
    assert forbidden_imports(modules) == []


def test_the_walk_sees_every_kind_of_import(tmp_path: Path) -> None:
    """The checks above can fail: the walk finds deferred, relative and TYPE_CHECKING imports."""
    package = tmp_path / "worker"
    (package / "contract").mkdir(parents=True)
    (package / "pipeline").mkdir()
    for init in (package, package / "contract", package / "pipeline"):
        (init / "__init__.py").write_text("")
    (package / "settings.py").write_text("")
    (package / "contract" / "jobs.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "from . import patterns\n"
        "if TYPE_CHECKING:\n    from worker.settings import Settings\n"
    )
    (package / "contract" / "patterns.py").write_text(
        "def load():\n    from worker.contract import jobs\n"
    )
    (package / "pipeline" / "processor.py").write_text("import worker.contract.jobs\n")

    graph = import_graph(package)

    assert graph["worker.contract.jobs"] == {"worker.contract.patterns", "worker.settings"}
    assert graph["worker.pipeline.processor"] == {"worker.contract.jobs"}
    assert circle(graph) is not None
    assert upward_imports(part_graph(graph)) == [
        "worker.contract imports worker.settings, a floor above it"
    ]
    assert forbidden_imports(graph) == ["worker.contract.jobs imports worker.settings"]
