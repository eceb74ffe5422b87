"""Export a training run as a SavedModel: `python -m vcaption.export --run DIR [--output saved_models]`.

Writes `<output>/<name>/<version>/`, a hermetic SavedModel (encoded images and strings in, strings
and scores out; see the family's `export` module) for TF Serving and `beam_jobs.batch_caption`.
Versions are integers, never overwritten (`vcaption.runtime.export_core`). The model server's
config, `serving/models.config` beside `--output`, is then rewritten to name the exports that exist
(`vcaption.serving.config`; `--serving-config` picks another file, '' skips it). The run directory is
all it reads: its `config.json` names the task, `model.keras` is the model and `data/` holds the
vocabulary (and answers), so it works from any working directory and after the preprocessing
output is gone.
"""

from __future__ import annotations

import argparse
import sys

from vcaption.runtime import logs
from vcaption.runtime.run_directory import RunDirectory


def export_run(run_dir: str, output: str = "saved_models", name: str | None = None, **options) -> str:
    """Exports a training run directory with its task's exporter; returns the version directory.

    `options`: "beam_size", "n_best" (captioners), "top_k" (VQA); None keeps the run's setting.
    """
    from vcaption.runtime.task import get_task

    run = RunDirectory(run_dir)
    if not run.exists("config.json") or not run.exists("model.keras"):
        raise FileNotFoundError(f"{run.path} is not a finished training run (no config.json / model.keras)")
    config = run.read_config()
    name = name or (config.get("export") or {}).get("name") or config["name"]
    return get_task(config.get("task", "caption")).export_run(run, output, name, options)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vcaption.export", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--run", required=True, help="training run directory (python -m vcaption.train --output)")
    parser.add_argument("--output", default="saved_models", help="root of <name>/<version>/")
    parser.add_argument("--name", default=None, help="served model name (default: the run's export.name or preset)")
    parser.add_argument("--beam-size", type=int, default=None, help="captioners: beam width (default: the run's)")
    parser.add_argument("--n-best", type=int, default=None, help="captioners: captions per image (default: the run's)")
    parser.add_argument("--top-k", type=int, default=None, help="VQA: answers per question (default: the exporter's)")
    parser.add_argument("--serving-config", default=None,
                        help="model server config to rewrite from the exports under --output "
                             "(default: serving/models.config beside --output; '' skips it)")
    parser.add_argument("--verbose", action="store_true", help="also show TensorFlow's own log lines")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    logs.configure(args.verbose)
    path = export_run(args.run, args.output, args.name, beam_size=args.beam_size, n_best=args.n_best,
                      top_k=args.top_k)
    if args.serving_config != "":
        from vcaption.serving import config as serving_config

        serving_config.update(args.output, args.serving_config)
    print(path)  # last, alone on its line: scripts read it
    return 0


if __name__ == "__main__":
    sys.exit(main())
