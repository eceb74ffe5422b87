"""The model server's `--model_config_file`, written from the exports that exist.

    python -m vcaption.serving.config --models-dir saved_models --output serving/models.config

The stock `tensorflow_model_server` waits until *every* model of its config has a loadable version
before it opens its ports, so a config naming a model that was never exported keeps the server
from ever serving. This command writes a text `ModelServerConfig` naming exactly the models that
have at least one integer version directory holding a `saved_model.pb` under `--models-dir`, with
`base_path` `/models/<name>` (where `serving/docker-compose.yml` mounts `saved_models/`). A model
already in the output file keeps its entry as it is there (version policy, labels, platform,
base path), so hand-made pins and canaries survive; a model whose exports are gone is dropped.

Every export rewrites it: `python -m vcaption.export` and the export at the end of
`python -m vcaption.train` update `serving/models.config` beside the models directory (the
repository layout the compose file expects: `saved_models/` and `serving/` side by side).

Example:
```python
names = write_models_config("saved_models", "serving/models.config")  # ["lrcn_2f"]
```
"""

from __future__ import annotations

import sys
import uuid

import tensorflow as tf
from google.protobuf import text_format

from vcaption import cli
from vcaption.serving.servables import list_versions

CONTAINER_MODELS_DIR = "/models"
CONFIG_FILE = "models.config"

HEADER = """\
# TF Serving model config: a text-format tensorflow.serving.ModelServerConfig
# (tensorflow_model_server --model_config_file=/config/models.config).
#
# Written by `python -m vcaption.serving.config --models-dir saved_models --output
# serving/models.config`, which every export runs: it names only the models that have an exported
# version, because the model server does not open its ports until every configured model has one.
# Edit an entry freely (its settings are kept on the next rewrite); a model whose exports are gone
# is dropped.
#
# `name` is the served model name; saved_models/<name>/<version>/ on the host is mounted at
# /models/<name>/<version>/ in the container (docker-compose.yml). The server polls each base_path
# for integer version directories (--file_system_poll_wait_seconds); exports are renamed into
# place atomically, so it never sees a half-written version.
#
# Version policy: `latest { num_versions: 1 }` serves the newest export and unloads the previous
# one once the new one is AVAILABLE. To pin or roll back, replace it with
#   model_version_policy { specific { versions: 3 } }
# and to canary two versions side by side
#   model_version_policy { specific { versions: 3 versions: 4 } }
#   version_labels { key: "stable" value: 3 }  version_labels { key: "canary" value: 4 }
# (clients then ask for ModelSpec.version_label "canary"). This file is re-read every
# --model_config_file_poll_wait_seconds, so such edits and new models need no restart.

"""


def default_config_path(models_dir: str) -> str:
    """`serving/models.config` beside `models_dir` (`saved_models` -> `serving/models.config`)."""
    parent = models_dir.rstrip("/").rpartition("/")[0]
    return f"{parent}/serving/{CONFIG_FILE}" if parent else f"serving/{CONFIG_FILE}"


def exported_models(models_dir: str) -> list[str]:
    """Names under `models_dir` with at least one integer version holding a `saved_model.pb`."""
    if not tf.io.gfile.isdir(models_dir):
        return []
    names = sorted(entry.rstrip("/") for entry in tf.io.gfile.listdir(models_dir))
    return [name for name in names
            if not name.startswith(".") and list_versions(f"{models_dir.rstrip('/')}/{name}")]


def read_config_text(path: str):
    """The `ModelServerConfig` in `path` (any tf.io.gfile path), or None when there is no file."""
    from tensorflow_serving.config import model_server_config_pb2

    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        text = f.read()
    try:
        return text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    except text_format.ParseError as error:
        # Rewriting would silently lose the hand-made settings in it: the user fixes it first.
        raise ValueError(f"{path}: not a valid ModelServerConfig ({error}); fix or delete it") from None


def models_config(names, previous=None, base_path: str = CONTAINER_MODELS_DIR):
    """A `ModelServerConfig` serving `names`: each one's entry from `previous` when it has one,
    else `base_path/<name>`, platform "tensorflow", the newest version only."""
    from tensorflow_serving.config import model_server_config_pb2

    kept = {}
    if previous is not None:
        kept = {model.name: model for model in previous.model_config_list.config}
    config = model_server_config_pb2.ModelServerConfig()
    for name in names:
        entry = config.model_config_list.config.add()
        if name in kept:
            entry.CopyFrom(kept[name])
            continue
        entry.name = name
        entry.base_path = f"{base_path.rstrip('/')}/{name}"
        entry.model_platform = "tensorflow"
        entry.model_version_policy.latest.num_versions = 1
    return config


def write_models_config(models_dir: str, output: str | None = None,
                        base_path: str = CONTAINER_MODELS_DIR) -> list[str]:
    """Rewrites `output` (default: `default_config_path(models_dir)`) to serve the exports under
    `models_dir`; returns the model names it names.

    The file is written next to its final name and renamed over it, so a server polling it
    (`--model_config_file_poll_wait_seconds`) never reads half a file.
    """
    output = output or default_config_path(models_dir)
    names = exported_models(models_dir)
    text = HEADER + text_format.MessageToString(models_config(names, read_config_text(output), base_path))
    directory = output.rpartition("/")[0]
    if directory:
        tf.io.gfile.makedirs(directory)
    tmp = f"{output}.tmp-{uuid.uuid4().hex}"
    with tf.io.gfile.GFile(tmp, "w") as f:
        f.write(text)
    tf.io.gfile.rename(tmp, output, overwrite=True)
    return names


def update(models_dir: str, output: str | None = None) -> str:
    """`write_models_config` for the commands that export: prints what it wrote; returns the path."""
    output = output or default_config_path(models_dir)
    names = write_models_config(models_dir, output)
    print(f"model server config -> {output}: {', '.join(names) or 'no models'}")
    return output


def build_parser():
    parser = cli.make_parser("python -m vcaption.serving.config", __doc__.split("\n\n")[0])
    parser.add_argument("--models-dir", default="saved_models", help="root of <name>/<version>/ exports")
    parser.add_argument("--output", default=None,
                        help="the config file to write (default: serving/models.config beside --models-dir)")
    parser.add_argument("--base-path", default=CONTAINER_MODELS_DIR,
                        help="where the model server sees --models-dir (the compose file mounts it at /models)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    output = args.output or default_config_path(args.models_dir)
    names = write_models_config(args.models_dir, output, args.base_path)
    print(f"{output}: {', '.join(names) or 'no models (nothing exported yet)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
