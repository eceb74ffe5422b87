"""Decoding strategies of one captioner, side by side (LRCN, Donahue et al. PAMI, §5 and Table 6 bottom).

    python -m vcaption.evaluate --run runs/lrcn_2f --decoding-sweep [--split test] [--num-images K] [--output DIR]

decodes a split with beam search of widths {1, 2, 3, 5, 10} (width 1 is greedy) and with best-of-N
sampling, N in {1, 10, 25, 100} x LRCN's T in {1, 1.5, 2} (the most likely of N samples under the
untempered model, `decoding.sample`), and scores every strategy with pycocoevalcap, the caption
diversity statistics (`vcaption.metrics.diversity`) and, on a generated world with a scenes.json,
scene grounding (`vcaption.metrics.grounding`).

Temperature: LRCN's "T" is a factor on the logits, "the inverse of the temperature"; vcaption
has one convention, the true temperature of softmax(logits / temperature) (`decoding.sample`, the
export's `caption_sample`). The sweep is specified in LRCN's T so that its rows are Table 6's, and
every row states both: LRCN T = 1, 1.5, 2 are temperature = 1, 0.667, 0.5.

Writes, into the output directory:
  results_<split>_<strategy>.json   COCO results of each strategy (`beam3`, `sample100_T1.5`, ...)
  decoding_sweep_<split>.json       {"command", "split", "images", "strategies": {strategy: row}}
  decoding_sweep_<split>.md         the same table in Markdown, with the command that made it
Each row: "beam_size" or "num_samples" with "lrcn_T" and "temperature", the pycocoevalcap metrics,
"diversity", "grounding" (with scenes) and "results" (its results file). The JSON is rewritten after
every strategy, so an interrupted sweep keeps what it measured.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from typing import Iterable, Mapping, Sequence

from vcaption import decoding, text
from vcaption.captioning import evaluation
from vcaption.config import DecodeConfig
from vcaption.metrics import caption as caption_metrics
from vcaption.metrics import grounding

BEAM_WIDTHS = (1, 2, 3, 5, 10)
SAMPLE_SIZES = (1, 10, 25, 100)
LRCN_TEMPERATURES = (1.0, 1.5, 2.0)


@dataclasses.dataclass(frozen=True)
class Strategy:
    """One way to decode: beam search of width `beam_size`, or the best of `num_samples` samples
    drawn with LRCN's factor `lrcn_t` on the logits (true temperature 1 / lrcn_t)."""

    beam_size: int = 0
    num_samples: int = 0
    lrcn_t: float = 1.0

    def __post_init__(self):
        if (self.beam_size > 0) == (self.num_samples > 0):
            raise ValueError(f"a strategy is a beam width or a number of samples, got {self}")
        if not self.lrcn_t > 0:
            raise ValueError(f"LRCN's T must be > 0, got {self.lrcn_t}")

    @property
    def temperature(self) -> float:
        return decoding.lrcn_temperature(self.lrcn_t)

    @property
    def name(self) -> str:
        return f"beam{self.beam_size}" if self.beam_size else f"sample{self.num_samples}_T{self.lrcn_t:g}"

    def describe(self) -> dict:
        if self.beam_size:
            return {"beam_size": self.beam_size}
        return {"num_samples": self.num_samples, "lrcn_T": self.lrcn_t, "temperature": self.temperature}

    def generator(self, model, max_length: int, seed: int = 0):
        """The traced decoder of this strategy (`evaluation.make_generator` / `make_sampler`)."""
        if self.beam_size:
            return evaluation.make_generator(model, DecodeConfig(beam_size=self.beam_size, max_length=max_length))
        return evaluation.make_sampler(model, max_length, self.num_samples, self.temperature, seed)


def strategies(beam_widths: Iterable[int] = BEAM_WIDTHS, sample_sizes: Iterable[int] = SAMPLE_SIZES,
               lrcn_temperatures: Iterable[float] = LRCN_TEMPERATURES) -> list[Strategy]:
    """Every beam width, then every (N, LRCN T) sampling setting: LRCN Table 6's grid by default."""
    return ([Strategy(beam_size=k) for k in beam_widths]
            + [Strategy(num_samples=n, lrcn_t=t) for n in sample_sizes for t in lrcn_temperatures])


def run_sweep(model, vocab: text.Vocabulary, data_dir: str, split: str, sweep: Sequence[Strategy], run,
              max_length: int, image_size: int, feature_dim: int | None = None,
              world: tuple[dict, list] | None = None, command: str = "", seed: int = 0,
              batch_size: int = 32, max_images: int | None = None) -> dict:
    """Decodes `split` with every strategy of `sweep`, scores each, writes the files of the module
    docstring into `run` (a `RunDirectory`) and returns the JSON table.

    Args:
        world: (scenes, held-out pairs) of `grounding.load_scenes`, for the grounding metrics.
        command: the command line, recorded with the table.
        seed: sampling seed (each batch folds in its index).
        batch_size: images per decoding batch (best-of-100 decodes 100 rows per image).
        max_images: only the split's first images (best-of-100 costs 100 decodes per image).
    """
    dataset, _ = evaluation.eval_datasets(data_dir, split, image_size, feature_dim, batch_size=batch_size)
    if max_images:
        dataset = dataset.unbatch().take(max_images).batch(batch_size)
    training = evaluation.training_captions(data_dir)
    table = {"command": command, "split": split, "images": None, "max_images": max_images, "seed": seed,
             "strategies": {}}
    done, done_images = _finished_rows(run, split, max_images, seed)
    for strategy in sweep:
        if strategy.name in done:  # scored by an earlier, interrupted run of the same sweep
            table["strategies"][strategy.name] = done[strategy.name]
            table["images"] = done_images
            print(f"{strategy.name}: CIDEr-D {done[strategy.name]['CIDEr']:.3f} (from the earlier run)", flush=True)
            continue
        started = time.time()
        candidates, references, _ = evaluation.generate_captions(
            strategy.generator(model, max_length, seed), vocab, dataset)
        decoded = time.time() - started
        results = f"results_{split}_{strategy.name}.json"
        evaluation.write_results(run.file(results), candidates)
        row = {**strategy.describe(), **caption_metrics.score_captions(references, candidates, spice=False),
               "diversity": evaluation.caption_diversity(candidates, references, training)}
        if world is not None:
            row["grounding"] = grounding.grounding_scores(candidates, *world)
        row.update(results=results, decode_seconds=round(decoded, 1))
        table["images"] = len(candidates)
        table["strategies"][strategy.name] = row
        run.write_json(f"decoding_sweep_{split}.json", table)
        print(f"{strategy.name}: CIDEr-D {row['CIDEr']:.3f}, copied "
              f"{100 * row['diversity']['copied_from_training']:.1f}% ({decoded:.0f} s decoding)", flush=True)
    with open(run.file(f"decoding_sweep_{split}.md"), "w") as f:
        f.write(markdown_table(table) + "\n")
    return table


# Markdown columns: (header, row -> value or None, format of the value).
_COLUMNS = [
    ("beam", lambda r: r.get("beam_size"), "{}"),
    ("N", lambda r: r.get("num_samples"), "{}"),
    ("LRCN T", lambda r: r.get("lrcn_T"), "{:g}"),
    ("temperature", lambda r: r.get("temperature"), "{:.3g}"),
    *[(label, lambda r, k=key: r.get(k), "{:.3f}") for label, key in
      (("B1", "Bleu_1"), ("B4", "Bleu_4"), ("M", "METEOR"), ("R", "ROUGE_L"), ("CIDEr-D", "CIDEr"))],
    *[(label, lambda r, k=key: r.get("grounding", {}).get(k), "{:.1%}") for label, key in
      (("obj P", "object_precision"), ("obj R", "object_recall"), ("CHAIR_s", "chair_s"),
       ("binding", "binding_accuracy"), ("counts", "count_accuracy"))],
    *[(label, lambda r, k=key: r["diversity"].get(k), fmt) for label, key, fmt in
      (("copied", "copied_from_training", "{:.1%}"), ("distinct", "distinct_captions", "{:.1%}"),
       ("vocab", "vocabulary_used", "{}"), ("coverage", "vocabulary_coverage", "{:.1%}"),
       ("distinct-1", "distinct_1", "{:.3f}"), ("distinct-2", "distinct_2", "{:.3f}"))],
]


def _finished_rows(run, split: str, max_images: int | None, seed: int) -> tuple[dict, int | None]:
    """(rows by strategy name, images) that an earlier run of the same sweep (same split, images
    and seed) already wrote: a best-of-100 sweep of a whole split takes about an hour on a 2-core
    CPU, so an interrupted one resumes instead of starting over."""
    path = run.file(f"decoding_sweep_{split}.json")
    if not os.path.exists(path):
        return {}, None
    with open(path) as f:
        earlier = json.load(f)
    if (earlier.get("max_images"), earlier.get("seed")) != (max_images, seed):
        return {}, None
    rows = {name: row for name, row in earlier.get("strategies", {}).items()
            if os.path.exists(run.file(row.get("results", "")))}
    return rows, earlier.get("images")


def markdown_table(table: Mapping) -> str:
    """The sweep as a Markdown table under the command that made it; grounding columns only when
    the rows have them."""
    rows = list(table["strategies"].values())
    columns = [c for c in _COLUMNS if any(c[1](r) is not None for r in rows)]

    def cell(value, fmt):
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            return "-"
        return fmt.format(value).replace("%", "")

    header = "| " + " | ".join(name + (" %" if "%" in fmt else "") for name, _, fmt in columns) + " |"
    lines = [f"`{table['command']}` ({table['split']} split, {table['images']} images)" if table["command"]
             else f"{table['split']} split, {table['images']} images", "", header,
             "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(get(r), fmt) for _, get, fmt in columns) + " |" for r in rows]
    return "\n".join(lines)
