"""The package's import graph: no cycles, and families import each other only where declared.

Every `import` and `from ... import` of `vcaption/` and `beam_jobs/` counts, at module level and
inside functions (a function-level import is a dependency too, only a later one). Rules:

- no cycle between modules;
- `vcaption` never imports `beam_jobs` (the jobs are built on the library, not the reverse; the
  runtime launches the preprocessing job as a command);
- the shared base (everything in `vcaption/` outside the family folders and the command lines)
  imports no family: it reaches them by name through `vcaption.registry`;
- a family imports another family only where `ALLOWED_FAMILY_IMPORTS` says so.
"""

from __future__ import annotations

import ast
import pathlib

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("vcaption", "beam_jobs")
FAMILIES = ("captioning", "video", "vqa", "retrieval", "objects", "noc")
# Declared by the design: video description and region captioning reuse the captioners, their
# evaluation and export. VQA starts its encoder from the object classifier through the runtime
# (`run_preset`), not by importing the objects family. The Novel Object Captioner is a captioner:
# it reuses the captioners' generation and export.
ALLOWED_FAMILY_IMPORTS = {("video", "captioning"), ("retrieval", "captioning"), ("noc", "captioning")}
# Command lines and benchmarks sit on top of everything; they may import any family.
TOP_LEVEL = ("vcaption.train", "vcaption.export", "vcaption.evaluate", "vcaption.compare", "vcaption.bench")


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def discover() -> dict[str, pathlib.Path]:
    return {module_name(p): p for package in PACKAGES for p in sorted((REPO / package).rglob("*.py"))}


def resolve(name: str, modules) -> str | None:
    """The module `name` denotes, or its closest enclosing module we have; None when external."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(path: pathlib.Path, modules) -> set[str]:
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            # `from pkg import sub` imports the submodule when there is one, else a name of pkg.
            names = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules
                     else node.module for alias in node.names]
        else:
            continue
        targets.update(t for t in (resolve(n, modules) for n in names) if t)
    return targets


def import_graph() -> dict[str, set[str]]:
    modules = discover()
    return {name: imports_of(path, modules) - {name} for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], [0]
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def family(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "vcaption" and parts[1] in FAMILIES else None


def is_top_level(module: str) -> bool:
    return any(module == t or module.startswith(t + ".") for t in TOP_LEVEL)


def rule_violations(graph: dict[str, set[str]]) -> list[str]:
    problems = []
    for source, targets in sorted(graph.items()):
        for target in sorted(targets):
            if source.startswith("vcaption") and target.startswith("beam_jobs"):
                problems.append(f"{source} -> {target}: the library must not import the Beam jobs")
            mine, theirs = family(source), family(target)
            if theirs is None or mine == theirs or is_top_level(source) or source.startswith("beam_jobs"):
                continue
            if mine is None:
                problems.append(f"{source} -> {target}: the shared base imports the {theirs} family")
            elif (mine, theirs) not in ALLOWED_FAMILY_IMPORTS:
                problems.append(f"{source} -> {target}: undeclared {mine} -> {theirs} family import")
    return problems


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 50 and "vcaption.captioning.task" in graph
    assert cycles(graph) == []


def test_families_import_only_what_the_design_declares():
    assert rule_violations(import_graph()) == []


def test_the_checks_catch_a_cycle_and_an_undeclared_import():
    graph = {"vcaption.a": {"vcaption.b"}, "vcaption.b": {"vcaption.c"}, "vcaption.c": {"vcaption.a"},
             "vcaption.d": set()}
    assert cycles(graph) == [["vcaption.a", "vcaption.b", "vcaption.c"]]
    bad = {"vcaption.vqa.task": {"vcaption.objects.task"}, "vcaption.video.task": {"vcaption.captioning.lrcn"},
           "vcaption.runtime.task": {"vcaption.captioning.task"}, "vcaption.train": {"beam_jobs.preprocess"}}
    problems = rule_violations(bad)
    assert len(problems) == 3
    assert any("undeclared vqa -> objects" in p for p in problems)
    assert any("shared base imports the captioning family" in p for p in problems)
    assert any("must not import the Beam jobs" in p for p in problems)


def test_function_level_imports_are_seen(tmp_path):
    code = "def f():\n    from vcaption.vqa import task\n"
    modules = {"vcaption.vqa.task": None, "vcaption.vqa": None}
    path = tmp_path / "m.py"
    path.write_text(code)
    assert imports_of(path, modules) == {"vcaption.vqa.task"}
