"""The retrieval family on the shared runtime: registered tasks, the preset's model, import rules."""

from __future__ import annotations

import ast
import pathlib

from vcaption import presets
from vcaption.runtime.task import get_task

FAMILY = pathlib.Path(__file__).resolve().parents[2] / "vcaption" / "retrieval"


def imported_modules(path: pathlib.Path) -> set[str]:
    """Every module a file imports, at the top or inside functions."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
    return modules


def test_tasks_are_registered():
    from vcaption.retrieval.region_captioning import RegionCaptioningTask
    from vcaption.retrieval.task import RankerTask

    assert isinstance(get_task("retrieval"), RankerTask)
    assert isinstance(get_task("region_caption"), RegionCaptioningTask)


def test_the_ranker_is_the_presets_model():
    from vcaption.retrieval.ranker import RegionRanker
    from vcaption.retrieval.task import build_model

    cfg = presets.get_preset("karpathy_ranker")
    model = build_model(cfg, vocab_size=20)
    assert isinstance(model, RegionRanker) and model.vocab_size == 20
    assert model.image_size == cfg.data.image_size
    # The training run writes the retrieval metrics only; `python -m vcaption.export --run` exports.
    assert cfg.export.saved_models_dir == ""


def test_no_import_cycle_and_no_foreign_family():
    graph = {}
    for path in FAMILY.glob("*.py"):
        modules = imported_modules(path)
        assert not {m for m in modules if m.split(".")[0] == "beam_jobs"}, path.name  # run as a process
        foreign = {m for m in modules if m.split(".")[:2] in (["vcaption", "vqa"], ["vcaption", "video"],
                                                               ["vcaption", "objects"])}
        assert not foreign, f"{path.name} imports {foreign}"
        graph[path.stem] = {m.split(".")[2] for m in modules
                            if m.startswith("vcaption.retrieval.") and m.split(".")[2] != path.stem}
    # The ranker trainer is reached through the registry (run_preset), never imported by the family.
    assert not [name for name, deps in graph.items() if "task" in deps]
    visiting, done = set(), set()

    def visit(name):
        assert name not in visiting, f"import cycle through {name}"
        if name in done:
            return
        visiting.add(name)
        for dep in graph.get(name, ()):
            visit(dep)
        visiting.discard(name)
        done.add(name)

    for name in graph:
        visit(name)
