"""Region-level captioning (Karpathy & Fei-Fei §3.2, §4.3, Table 4), task "region_caption":

    python -m vcaption.train --preset karpathy_region_captioning --output runs/region_captioning \\
        [--set task.ranker=runs/karpathy_ranker]

1. Region–snippet training data, as the paper makes it: a trained region ranker (task.ranker, a
   `karpathy_ranker` run directory; trained here with its preset when absent, `run_preset`) aligns
   every train/val sentence to the image's regions with the chain MRF (Eqs. 10–12, exact Viterbi, β
   of that run, chosen on val), and each run of words on one region becomes a snippet of that
   region (`alignment.region_snippet_dataset`, Visual Genome format, `alignments_<split>.json`).
2. Evaluation data: the ground-truth region annotations of the test images, never used in
   training (`region_annotations`): each object box's Visual Genome phrase plus the phrases that
   name that object in the image's ground-truth sentences, up to 6 references of 2-4 words (the
   VG phrase alone, 3 words, is scored too).
3. Every region is cropped from its source image and warped to `crop_size` pixels (R-CNN style, as
   the ranker does); the crops with their snippets (train, val) or annotations (test) become one
   Karpathy-format file (`region_crops`) preprocessed by the usual Beam job into caption records
   (`region_records/`).
4. Two captioners of the preset's architecture (lrcn_2f by default) get the same explicit step
   budget (the one `trainer.fit`, kept at their best validation CIDEr-D interval): the full-frame
   model on whole images with their full sentences, the region-level model on the region crops
   with their snippets. Both caption every test region crop (the full-frame model sees it warped
   to its own input size) and are scored against the region annotations with pycocoevalcap
   (BLEU-1..4, METEOR, ROUGE-L, CIDEr-D): the paper's Table 4.

`task_args`: see `DEFAULT_TASK_ARGS`.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Mapping, Sequence

import keras
import tensorflow as tf

from vcaption import data as data_lib
from vcaption import images, presets, registry
from vcaption.captioning import evaluation
from vcaption.captioning.task import build_model, training_plan
from vcaption.config import DecodeConfig, ExperimentConfig
from vcaption.metrics import caption as caption_metrics
from vcaption.retrieval import alignment
from vcaption.retrieval.embedding import embed_split
from vcaption.retrieval.region_annotations import region_references, world_image_paths
from vcaption.retrieval.region_crops import group_regions, write_region_dataset
from vcaption.runtime import builtin_data, trainer
from vcaption.runtime.prepared_data import PreparedData
from vcaption.runtime.run_directory import RunDirectory
from vcaption.runtime.task import Task, run_preset

DEFAULT_TASK_ARGS = {
    "ranker": None,          # a karpathy_ranker run directory (model.keras, metrics.json); None: train one
    "ranker_epochs": 10,     # epochs of that ranker when it is trained here
    "ranker_batch_size": 100,  # its minibatch (the negatives of Eq. 9)
    "world": None,           # the shapes world (default <data.shapes_root>/world)
    "max_regions": 5,        # R of the ranker, whole image included
    "crop_size": 32,         # side of the warped region crops (and the region model's input)
    "context": 8,            # source pixels of surroundings kept around every box (crop_region)
    "train_images": 2000,    # images whose aligned sentences give the training snippets
    "val_images": 200,       # images whose aligned sentences give the validation snippets
    "test_images": 500,      # test images whose annotated regions are captioned and scored
    "full_frame_steps": 800,  # training steps of each captioner (equal budgets)
    "region_steps": 800,
}


# ---------------------------------------------------------------------------------------------
# 1. The ranker and its aligned snippets
# ---------------------------------------------------------------------------------------------
def ranker_config(cfg: ExperimentConfig, args: Mapping, data: PreparedData, world: str) -> ExperimentConfig:
    """The karpathy_ranker preset on this run's region records and world, with `args`' sizes."""
    ranker = presets.get_preset("karpathy_ranker")
    return dataclasses.replace(
        ranker, data=dataclasses.replace(cfg.data, data_dir=data.directory),
        task_args={**ranker.task_args, "scenes": os.path.join(world, "scenes.json"),
                   "max_regions": int(args["max_regions"]), "val_images": int(args["val_images"])},
        train=dataclasses.replace(ranker.train, epochs=int(args["ranker_epochs"]),
                                  batch_size=int(args["ranker_batch_size"])),
        # Only its alignment is needed here: no SavedModel of it.
        export=dataclasses.replace(ranker.export, saved_models_dir=""))


def load_ranker(cfg: ExperimentConfig, args: Mapping, data: PreparedData, world: str, run: RunDirectory,
                verbose: int) -> tuple[keras.Model, float]:
    """The ranker whose alignments make the snippets, and the β its run chose on val.

    Args:
        cfg: this run's preset.
        args: its task settings; `args["ranker"]` names a finished karpathy_ranker run to use.
        data: the ranker's records (captions with region boxes).
        world: the shapes world (its scenes.json gives the ranker's alignment ground truth).
        run: this run; without `args["ranker"]` a ranker is trained in `<run>/ranker` by its own
            preset's task (`run_preset`), or reused when it finished before.
        verbose: Keras progress verbosity.

    Returns:
        (the ranker, β).
    """
    if args["ranker"]:
        if not tf.io.gfile.exists(os.path.join(args["ranker"], "metrics.json")):
            raise FileNotFoundError(f"task.ranker={args['ranker']}: no metrics.json (not a finished "
                                    "karpathy_ranker run)")
        ranker_run = RunDirectory(args["ranker"])
    else:
        ranker_run = RunDirectory(run.file("ranker"))
        if not ranker_run.exists("metrics.json"):
            run_preset(ranker_config(cfg, args, data, world), ranker_run.path, verbose=verbose)
    metrics = ranker_run.read_json("metrics.json")
    if "alignment" not in metrics:
        raise ValueError(f"{ranker_run.path}/metrics.json has no alignment result (β): "
                         "run the ranker with scenes.json")
    return registry.load_model(ranker_run.file("model.keras")), float(metrics["alignment"]["beta"])


def aligned_snippets(ranker, beta: float, data_dir: str, split: str, max_regions: int, limit: int,
                     source_size: Sequence[int]) -> list[dict]:
    """The first `limit` images of a split, every sentence aligned and cut into region snippets
    (Visual Genome format)."""
    embedded = embed_split(ranker, data_dir, split, max_regions, limit=limit)
    return alignment.region_snippet_dataset(embedded, beta, source_size)


# ---------------------------------------------------------------------------------------------
# 4. Captioners
# ---------------------------------------------------------------------------------------------
def train_captioner(cfg: ExperimentConfig, data: PreparedData, image_size: int, steps: int, output: str,
                    name: str, verbose: int):
    """A captioner of the preset's architecture trained for exactly `steps` steps on `data` (best
    val CIDEr-D interval kept).

    Args:
        cfg: the preset (its model, training and decoding settings).
        data: the caption records to train on.
        image_size: the model's input side (the records' images are resized to it).
        steps: the step budget.
        output: its training state (resumable).
        name: printed in progress lines.
        verbose: Keras progress verbosity.

    Returns:
        (model, vocabulary, training summary {"steps", "seconds", "best_val_CIDEr", "train_captions"}).
    """
    cfg = dataclasses.replace(
        cfg, data=dataclasses.replace(cfg.data, data_dir=data.directory, image_size=image_size,
                                      feature_dim=None),
        model_args={**cfg.model_args, "image_size": image_size},
        train=dataclasses.replace(cfg.train, epochs=1))  # one "epoch" of `steps` steps
    vocab = data.vocabulary()
    keras.utils.set_random_seed(cfg.train.seed)  # both start alike, whether the ranker trained first or not
    model = build_model(cfg, vocab.size, data.word_counts())
    plan = dataclasses.replace(training_plan(cfg, data, model, steps=steps), name=name)
    training = trainer.fit(model, plan, cfg.train, output, verbose)
    training["train_captions"] = data.stats["captions"]["train"]
    return model, vocab, training


def caption_regions(model, vocab, regions: PreparedData, image_size: int, decode: DecodeConfig) -> dict:
    """Captions every test region crop (warped to `image_size`) and scores them against the region
    annotations; returns the pycocoevalcap metrics with "candidates" and "references"."""
    crops = data_lib.make_dataset(regions.directory, "test", "caption_eval", batch_size=64,
                                  image_size=image_size)
    generate = evaluation.make_generator(model, decode)
    candidates, references, _ = evaluation.generate_captions(generate, vocab, crops)
    scores = caption_metrics.score_captions(references, candidates, spice=False)
    return {**scores, "candidates": candidates, "references": references}


def public(scores: Mapping) -> dict:
    """The rounded metrics of a `caption_regions` result (no captions)."""
    return {k: round(float(v), 4) for k, v in scores.items() if not isinstance(v, dict)}


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------
class RegionCaptioningTask(Task):
    """Several stages, each of them a runtime piece (`run_preset`, `trainer.fit`, the Beam job's
    command): `run` strings them together instead of the single-model steps of `Task.run`."""

    name = "region_caption"

    def prepare_data(self, cfg, run, verbose):
        # The ranker's records: captions with the instance boxes that become the regions.
        return builtin_data.prepared_data(cfg.data, "coco")

    def run(self, cfg: ExperimentConfig, output: str, strategy_name: str = "default",
            verbose: int = 1) -> dict:
        """Builds the region–snippet data, trains both captioners, prints Table 4, writes metrics.json."""
        if strategy_name != "default":
            raise ValueError("task region_caption runs on the default strategy only")
        start = time.perf_counter()
        keras.utils.set_random_seed(cfg.train.seed)
        args = {**DEFAULT_TASK_ARGS, **cfg.task_args}
        run = RunDirectory(output)
        data = self.prepare_data(cfg, run, verbose)
        world = args["world"] or builtin_data.world_dir(cfg.data)
        run.write_config(cfg, data, task_args=args)

        # 1-2. Aligned snippets (train, val) and annotated regions (test).
        ranker, beta = load_ranker(cfg, args, data, world, run, verbose)
        paths, splits = world_image_paths(world)
        size = images.decode_image(tf.io.read_file(next(iter(paths.values())))).shape[:2]
        region_dir = run.file("region_data")
        tf.io.gfile.makedirs(region_dir)
        regions = {}
        for split in ("train", "val"):
            snippets = aligned_snippets(ranker, beta, data.directory, split, int(args["max_regions"]),
                                        int(args[f"{split}_images"]), size)
            run.write_json(os.path.join("region_data", f"alignments_{split}.json"), snippets)
            regions[split] = group_regions(snippets)
        test_ids = [i for i in paths if splits[i] == "test"][: int(args["test_images"])]
        regions["test"] = group_regions(region_references(world, test_ids))
        alignment_seconds = time.perf_counter() - start

        # 3. Crops -> caption records with the usual Beam job.
        crop_size = int(args["crop_size"])
        dataset_path, written = write_region_dataset(regions, paths, crop_size, region_dir,
                                                     int(args["context"]))
        region_records = builtin_data.preprocess_once(
            "karpathy", dataset_path, run.file("region_records"),
            ["--image-size", str(crop_size), "--min-count", str(cfg.data.min_count),
             "--max-length", str(cfg.data.max_length)])
        print(f"region data: {written['regions']} regions ({written['dead_letter']} dead letters), "
              f"snippets of {args['train_images']} train / {args['val_images']} val images aligned with "
              f"beta = {beta:.3g}; test = annotated regions of {len(test_ids)} images")

        # 4. Equal budgets; both caption the same test crops.
        full, full_vocab, full_training = train_captioner(
            cfg, data, cfg.data.image_size, int(args["full_frame_steps"]), run.file("full_frame"),
            "full-frame captioner", verbose)
        region, region_vocab, region_training = train_captioner(
            dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, captions_per_image=1)),
            region_records, crop_size, int(args["region_steps"]), run.file("region_level"),
            "region-level captioner", verbose)
        full_scores = caption_regions(full, full_vocab, region_records, cfg.data.image_size, cfg.decode)
        region_scores = caption_regions(region, region_vocab, region_records, crop_size, cfg.decode)
        rows = {"full-frame model": public(full_scores), "region-level model": public(region_scores)}
        # Also against the Visual Genome phrase alone (each region's first reference): one 3-word
        # reference, so BLEU-4 has no reference 4-grams to match there.
        vg_rows = {}
        for name, scores in (("full-frame model", full_scores), ("region-level model", region_scores)):
            vg_rows[name] = public(caption_metrics.score_captions(
                {k: v[:1] for k, v in scores["references"].items()}, scores["candidates"], spice=False))

        result = {"preset": cfg.name, "task": "region_caption", "split": "test",
                  "beam_size": cfg.decode.beam_size,
                  "data_dir": data.directory, "region_records": region_records.directory, "beta": beta,
                  "regions": written["regions"], "dead_letter": written["dead_letter"],
                  "test_images": len(test_ids),
                  "full_frame": {"metrics": rows["full-frame model"], "training": full_training},
                  "region_level": {"metrics": rows["region-level model"], "training": region_training},
                  "visual_genome_phrase_only": vg_rows,
                  "alignment_seconds": round(alignment_seconds, 1),
                  "seconds": round(time.perf_counter() - start, 1)}
        metrics_path = run.write_metrics(result)
        run.write_json("region_captions_test.json",
                       {k: {"full_frame": full_scores["candidates"][k],
                            "region_level": region_scores["candidates"][k],
                            "references": region_scores["references"][k]}
                        for k in sorted(region_scores["candidates"])})
        title = (f"region annotations of the test split ({written['regions']['test']} regions: Visual Genome "
                 f"phrase + the object's phrases in the 5 sentences), beam {cfg.decode.beam_size}")
        print(evaluation.format_table(rows, title))
        print(evaluation.format_table(vg_rows, "the same, against the Visual Genome phrase alone"))
        print(f"metrics -> {metrics_path}")
        return result
