"""One image-sentence retrieval table across families: `python -m vcaption.compare --task retrieval`.

    python -m vcaption.compare --task retrieval [--runs runs/compare_retrieval]
        [--output docs/retrieval_table.md] [--max-test-images N] [--set section.field=value ...]

Every system trains (or, if its run directory holds a finished run — its `metrics.json` — is only
reloaded, not evaluated again) on one
preprocessed world — the built-in shapes world in COCO format, so that the records carry the
object boxes the region rankers need; `--set data.*` sizes it — and scores the same test images
and sentences (`embedding.load_split`, the first `--max-test-images`):

| row | preset | score matrix |
|---|---|---|
| `eq8_ranker` | `karpathy_ranker` | Σ_t max_i v_iᵀ s_t (Karpathy & Fei-Fei Eq. 8) |
| `eq7_ranker` | `karpathy_ranker_eq7` | Σ_t Σ_i max(0, v_iᵀ s_t) (Eq. 7, DeFrag-style) |
| `vsepp_mh` | `vsepp_mh` | cosine of whole-image and GRU sentence embeddings, max of hinges |
| `kiros_sh` | `kiros_sh` | cosine of whole-image and LSTM sentence embeddings, sum of hinges |
| `mrnn_raw`, `mrnn_normalised` | `mao_mrnn` | log P(S\\|I), and minus the blind LM's log P(S) |
| `lrcn_2f_raw`, `lrcn_2f_normalised` | `lrcn_2f` | the same with LRCN-2f |
| `upper_bound` | — | the best any text-based scorer can do, given duplicate sentences |

All rows use `vcaption.metrics.retrieval` (ties count against the model; the 1K protocol: folds of
1,000 images, one fold of all of them when there are fewer). The captioners' normalisation uses
each one's own blind LM (its decoder trained without the image, `train.baselines`). Outputs in `--runs`:

- `<system>_scores_test.npy`: float64 [images, sentences], rows images, columns sentences;
- `texts_test.json`: the sentences in column order, `[{"text", "image", "image_id"}]` (`image`: the
  row index of the sentence's image);
- `retrieval.json`: `{system: {"scores": "<file>.npy" (null for the upper bound), "i2t": {"R@1",
  "R@5", "R@10", "medr"}, "t2i": {...}, "protocol", "images", "folds"}}` (recalls as fractions);

and the Markdown table (`--output`) with the command that made it.
"""

from __future__ import annotations

import datetime
import json
import os

import numpy as np

from vcaption.metrics import retrieval

# (row, preset, kind): "embedding" models are scored by their `score_matrix`, "likelihood" ones
# (captioners) give a raw and a normalised row.
SYSTEMS = (
    ("eq8_ranker", "karpathy_ranker", "embedding"),
    ("eq7_ranker", "karpathy_ranker_eq7", "embedding"),
    ("vsepp_mh", "vsepp_mh", "embedding"),
    ("kiros_sh", "kiros_sh", "embedding"),
    ("mrnn", "mao_mrnn", "likelihood"),
    ("lrcn_2f", "lrcn_2f", "likelihood"),
)
UPPER_BOUND = "upper_bound"
LABELS = {
    "eq8_ranker": "Region ranker, Eq. 8 (Karpathy & Fei-Fei)",
    "eq7_ranker": "Region ranker, Eq. 7 (DeFrag-style)",
    "vsepp_mh": "VSE++ (GRU, max of hinges)",
    "kiros_sh": "Kiros et al. (LSTM, sum of hinges)",
    "mrnn_raw": "m-RNN, log P(S|I)",
    "mrnn_normalised": "m-RNN, log P(S|I) - log P(S)",
    "lrcn_2f_raw": "LRCN-2f, log P(S|I)",
    "lrcn_2f_normalised": "LRCN-2f, log P(S|I) - log P(S)",
    UPPER_BOUND: "upper bound (duplicate sentences)",
}
PROTOCOL = "1K"
TEXTS_FILE = "texts_test.json"
TABLE_FILE = "retrieval.json"


def scores_file(system: str) -> str:
    return f"{system}_scores_test.npy"


def _sides(result: dict) -> dict:
    """An `evaluate_retrieval` result in retrieval.json's terms: i2t = image annotation, t2i = image search."""
    def side(metrics):
        return {**{f"R@{k}": metrics[f"R@{k}"] for k in retrieval.RECALL_AT}, "medr": metrics["median_rank"]}

    return {"i2t": side(result["annotation"]), "t2i": side(result["search"]), "protocol": PROTOCOL,
            "images": result["images"], "folds": result["folds"]}


def write_outputs(output: str, scores: dict[str, np.ndarray], texts: list[str], image_ids: list[str]) -> dict:
    """Writes every system's matrix, `texts_test.json` and `retrieval.json` into `output`; returns the table.

    Args:
        output: the directory.
        scores: system -> [images, 5 · images] matrix (sentence j of image j // 5).
        texts: the normalized sentences in column order.
        image_ids: the images in row order.
    """
    per_image = retrieval.SENTENCES_PER_IMAGE
    if len(texts) != len(image_ids) * per_image:
        raise ValueError(f"{len(texts)} sentences for {len(image_ids)} images ({per_image} each)")
    checked = {}
    for system, matrix in scores.items():  # every matrix is checked before anything is written
        checked[system] = retrieval.check_scores(matrix, name=system)
        if checked[system].shape[0] != len(image_ids):
            raise ValueError(f"{system}: {checked[system].shape[0]} rows for {len(image_ids)} images")
    os.makedirs(output, exist_ok=True)
    with open(os.path.join(output, TEXTS_FILE), "w", encoding="utf-8") as f:
        json.dump([{"text": t, "image": j // per_image, "image_id": image_ids[j // per_image]}
                   for j, t in enumerate(texts)], f, indent=0, ensure_ascii=False)
    table = {}
    for system, matrix in checked.items():
        np.save(os.path.join(output, scores_file(system)), matrix)
        table[system] = {"scores": scores_file(system),
                         **_sides(retrieval.evaluate_retrieval(matrix, PROTOCOL))}
    table[UPPER_BOUND] = {"scores": None, **_sides(retrieval.duplicate_upper_bound(texts, PROTOCOL))}
    with open(os.path.join(output, TABLE_FILE), "w") as f:
        json.dump(table, f, indent=1)
    return table


def markdown_table(table: dict, command: str, notes: str = "") -> str:
    cells = ("R@1", "R@5", "R@10", "medr")
    header = ("| system | " + " | ".join(f"i2t {c}" for c in cells) + " | "
              + " | ".join(f"t2i {c}" for c in cells) + " |")
    lines = [header, "|" + "---|" * (2 * len(cells) + 1)]
    for system, row in table.items():
        values = [f"{100 * row[side][c]:.1f}" if c != "medr" else f"{row[side][c]:.0f}"
                  for side in ("i2t", "t2i") for c in cells]
        label = LABELS.get(system, system).replace("|", "\\|")  # P(S|I) inside a Markdown cell
        lines.append(f"| {label} (`{system}`) | " + " | ".join(values) + " |")
    any_row = next(iter(table.values()))
    return "\n".join([
        "# Image-sentence retrieval across families on the built-in shapes world",
        "",
        f"Test split, {any_row['images']} images x {any_row['images'] * retrieval.SENTENCES_PER_IMAGE} "
        f"sentences ({PROTOCOL} protocol, {any_row['folds']} fold). i2t = image annotation (rank of an "
        "image's best own sentence among all sentences), t2i = image search (rank of a sentence's "
        "image); R@K in percent, Med r the median rank; ties count against the model "
        "(`vcaption.metrics.retrieval`). Made by:",
        "",
        "```bash",
        command,
        "```",
        "",
        *lines,
        "",
        notes,
    ])


def _train(name: str, preset: str, overrides: list[str], runs: str):
    """Trains (or reloads) one preset on the shared data; returns (model, blind LM or None, cfg)."""
    from vcaption import config as config_lib
    from vcaption import presets as presets_lib
    from vcaption import registry
    from vcaption.runtime.task import run_preset

    cfg = config_lib.apply_overrides(presets_lib.get_preset(preset), overrides)
    run_dir = os.path.join(runs, preset)
    print(f"=== {name}: {preset} -> {run_dir}", flush=True)
    if os.path.exists(os.path.join(run_dir, "metrics.json")):
        print(f"{run_dir}: a finished run; its models are reloaded (delete the directory to retrain)")
    else:
        run_preset(cfg, run_dir, verbose=2)
    model = registry.load_model(os.path.join(run_dir, "model.keras"))
    blind_path = os.path.join(run_dir, "blind.keras")
    blind = registry.load_model(blind_path) if os.path.exists(blind_path) else None
    return model, blind, cfg


def run(runs: str, output: str, overrides: list[str], test_images: int | None, argv_command: str) -> dict:
    """Trains every system of `SYSTEMS`, scores the shared test set, writes the outputs and the table."""
    from vcaption import config as config_lib
    from vcaption import presets as presets_lib
    from vcaption.retrieval import likelihood
    from vcaption.retrieval.embedding import embed_loaded, load_split, score_matrix
    from vcaption.runtime import builtin_data

    started = datetime.datetime.now()
    # One world for all: the ranker preset's data settings (COCO format: records with boxes) with
    # the command's `--set data.*` over them.
    shared = config_lib.apply_overrides(presets_lib.get_preset("karpathy_ranker"), overrides)
    data = builtin_data.prepared_data(shared.data, "coco")
    common = [f"data.data_dir={data.directory}", "export.saved_models_dir=", "export.serving_config="]
    loaded, scores, minutes = None, {}, {}
    for name, preset, kind in SYSTEMS:
        begin = datetime.datetime.now()
        extra = ["train.baselines=True"] if kind == "likelihood" else []
        model, blind, cfg = _train(name, preset, overrides + common + extra, runs)
        if loaded is None:
            regions = int(shared.task_args.get("max_regions", 5))
            loaded = load_split(data.directory, "test", shared.data.image_size, regions, limit=test_images)
            print(f"test set: {len(loaded['image_ids'])} images, {len(loaded['texts'])} sentences")
        if kind == "embedding":
            scores[name] = score_matrix(model, embed_loaded(model, loaded))
        else:
            ids = likelihood.caption_ids_from_words(loaded["word_ids"])
            raw = likelihood.likelihood_matrix(model, loaded["images"], ids)
            scores[f"{name}_raw"] = raw
            scores[f"{name}_normalised"] = likelihood.normalise_by_prior(
                raw, likelihood.sentence_log_prior(blind, ids))
        minutes[name] = (datetime.datetime.now() - begin).total_seconds() / 60
    table = write_outputs(runs, scores, loaded["texts"], loaded["image_ids"])
    total = (datetime.datetime.now() - started).total_seconds() / 60
    per_system = ", ".join(f"{name} {m:.1f}" for name, m in minutes.items())
    notes = (f"World: {data.directory} ({data.stats['examples']}). Wall time on a shared 2-core CPU: "
             f"{total:.0f} minutes (training, evaluation and scoring, per system in minutes: {per_system}). "
             f"Score matrices, `texts_test.json` and `retrieval.json`: `{runs}/`; each run: `{runs}/<preset>/`.")
    os.makedirs(os.path.dirname(output) or ".", exist_ok=True)
    with open(output, "w") as f:
        f.write(markdown_table(table, argv_command, notes) + "\n")
    print(open(output).read())
    return table
