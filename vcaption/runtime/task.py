"""A family's task (what to train and how to judge it) and the run that every preset goes through.

`run_preset(cfg, output)` is what `python -m vcaption.train` calls. It looks up the preset's task
(`cfg.task`, in `vcaption.registry.TASKS`) and runs it the same way for every family:

0. Java, when the task scores captions (`registry.TASKS_SCORING_CAPTIONS`): missing, it stops here;
1. the distribution strategy (first: collective ops must be set up before TensorFlow runs an op),
   the seed, the run directory (`RunDirectory`);
2. `task.prepare_data`: a `PreparedData` (the preset's `data.data_dir`, or the built-in world);
   its assets are copied into the run, and `config.json` written with absolute paths;
3. for each of `task.systems` (the model, then its trained baselines): build it in the strategy
   scope, train it with the one routine (`trainer.fit`, resumable, keep-best), fine-tune it when
   the system has a second stage (`System.fine_tune`), save `<run>/<system.keras_file>`;
4. on the chief only: `task.evaluate` (test metrics of the model and every baseline, printed as a
   table), `task.export` (a SavedModel under `export.saved_models_dir`, then the model server's
   config rewritten to name every export there: `vcaption.serving.config`), `metrics.json`.

A family supplies a `Task` subclass with those four methods; see `vcaption.captioning.task`.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable, Mapping

import keras

from vcaption import registry
from vcaption.config import ExperimentConfig
from vcaption.metrics import caption as caption_metrics
from vcaption.runtime import devices, profile, trainer
from vcaption.runtime.prepared_data import PreparedData
from vcaption.runtime.run_directory import RunDirectory
from vcaption.serving import config as serving_config


@dataclasses.dataclass
class System:
    """One model a task trains.

    Args:
        name: its key in the task's results (`trained[name]`).
        build: makes the untrained model (called in the strategy scope).
        plan: the model -> how it trains (`trainer.TrainingPlan`).
        keras_file: where the trained model is saved in the run directory.
        fine_tune: a second stage after `trainer.fit` (model, run, verbose) -> its summary
            (`training["fine_tuning"]`), run in the strategy scope; None: none.
    """

    name: str
    build: Callable[[], keras.Model]
    plan: Callable[[keras.Model], trainer.TrainingPlan]
    keras_file: str = "model.keras"
    fine_tune: Callable[[keras.Model, RunDirectory, int], dict] | None = None


@dataclasses.dataclass
class Trained:
    """A trained system: the model (kept weights loaded) and its training summary."""

    model: keras.Model
    training: dict


class Task:
    """What a family supplies to `run`. Subclasses set `name` and implement the four steps."""

    name = ""
    verbose = 2  # Keras `verbose` of this run's training (set by `run`), for systems that train as they build

    def prepare_data(self, cfg: ExperimentConfig, run: RunDirectory, verbose: int) -> PreparedData:
        raise NotImplementedError

    def systems(self, cfg: ExperimentConfig, data: PreparedData, run: RunDirectory) -> list[System]:
        raise NotImplementedError

    def evaluate(self, cfg: ExperimentConfig, data: PreparedData, trained: dict[str, Trained],
                 run: RunDirectory) -> dict:
        """Test metrics of the model and its baselines (the body of metrics.json); prints the table."""
        raise NotImplementedError

    def export(self, cfg: ExperimentConfig, data: PreparedData, trained: dict[str, Trained],
               run: RunDirectory) -> str | None:
        """Writes a SavedModel under `cfg.export.saved_models_dir`; returns its path (None: no export)."""
        return None

    def export_run(self, run: RunDirectory, output: str, name: str, options: dict) -> str:
        """Exports a finished run from its directory alone (`python -m vcaption.export --run`):
        `run.file("model.keras")`, `run.data` (its copy of the data's assets), `run.read_config()`.
        `options`: the export command's settings ("beam_size", "n_best", "top_k"; None = the run's)."""
        raise ValueError(f"task {self.name!r} has no SavedModel export")

    def run(self, cfg: ExperimentConfig, output: str, strategy_name: str = "default", verbose: int = 1) -> dict:
        """Trains, evaluates and exports; writes `<output>/metrics.json` (with the run's
        `profile`: seconds per phase) and returns it."""
        with profile.recording() as seconds:
            result, run = self._run(cfg, output, strategy_name, verbose)
        if not devices.is_chief():  # the chief writes metrics.json
            return result
        result["profile"] = profile.rounded(seconds)
        print(f"profile: {profile.summary(seconds)}")
        print(f"metrics -> {run.write_metrics(result)}")
        return result

    def _run(self, cfg, output, strategy_name, verbose) -> tuple[dict, RunDirectory]:
        caption_metrics.require_java_for_preset(cfg)
        strategy = devices.distribution_strategy(strategy_name)
        keras.utils.set_random_seed(cfg.train.seed)
        run = RunDirectory(devices.worker_output(output))
        self.verbose = verbose
        with profile.phase("data"):
            data = self.prepare_data(cfg, run, verbose)
            run.keep_assets(data)
            run.write_config(cfg, data)
        trained = {}
        for system in self.systems(cfg, data, run):
            keras.utils.set_random_seed(cfg.train.seed)  # each system starts the same, alone or not
            with strategy.scope():
                model = system.build()
            print(f"{system.name}: {model.count_params():,} parameters, data {data.directory}")
            with profile.phase(f"train {system.name}"):
                summary = trainer.fit(model, system.plan(model), cfg.train, run.path, verbose)
            if system.fine_tune is not None:
                with profile.phase(f"fine-tune {system.name}"), strategy.scope():
                    summary["fine_tuning"] = system.fine_tune(model, run, verbose)
            trained[system.name] = Trained(model, summary)
            if devices.is_chief():
                model.save(run.file(system.keras_file))
        if not devices.is_chief():
            print("worker done; the chief evaluates and writes metrics.json")
            return {"training": {name: t.training for name, t in trained.items()}}, run
        with profile.phase("evaluate"):
            result = self.evaluate(cfg, data, trained, run)
        if cfg.export.saved_models_dir:
            with profile.phase("export"):
                path = self.export(cfg, data, trained, run)
                if path:
                    result["export"] = path
                    print(f"SavedModel -> {path}")
                    if cfg.export.serving_config != "":
                        serving_config.update(cfg.export.saved_models_dir, cfg.export.serving_config)
        return result, run


def task_settings(cfg: ExperimentConfig, defaults: Mapping[str, Any]) -> dict:
    """`defaults` with the preset's `task_args` (`--set task.<name>=value`) over them; a setting
    the task does not know is an error naming it (a typo would otherwise be ignored)."""
    unknown = set(cfg.task_args) - set(defaults)
    if unknown:
        raise ValueError(f"unknown {cfg.task} task settings {sorted(unknown)}; known: {sorted(defaults)}")
    return {**defaults, **cfg.task_args}


def get_task(name: str) -> Task:
    """The task object registered as `name` in `vcaption.registry.TASKS`."""
    if name not in registry.TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {sorted(registry.TASKS)}")
    module, _, attribute = registry.TASKS[name].partition(":")
    return getattr(importlib.import_module(module), attribute)()


def run_preset(cfg: ExperimentConfig, output: str, strategy_name: str = "default", verbose: int = 1) -> dict:
    """Runs the preset's task; returns the metrics it wrote to `<output>/metrics.json`."""
    return get_task(cfg.task).run(cfg, output, strategy_name, verbose)
