"""Region captioning with strong supervision (Karpathy & Fei-Fei PAMI §4.4, Table 5), task
"vg_region_caption":

    python -m vcaption.train --preset karpathy_vg_regions --output runs/vg_regions

Table 4 (`region_captioning`) trains the region model on snippets that the ranker's alignment
infers; Table 5 trains it directly on Visual Genome region descriptions, and asks the same
question with more data: does a full-frame captioner run on regions describe them as well as a
model trained on regions?

1. Regions: Visual Genome `region_descriptions.json` (task.regions; default: the built-in world's,
   whose objects are boxed and described by `data.shapes_region_annotators` simulated workers
   besides their own box and phrase, `shapes.annotator_regions`), read by the Visual Genome
   reader with its splits (`densecap_splits.json`).
2. Training regions (train split): every box with its own phrase, as published (NeuralTalk2 and
   DenseCap train on the raw regions). Evaluation regions (val, test): one image's boxes merged
   at IoU >= task.merge_iou (0.7, the paper's §4 "Data Preprocessing") into their mean box
   with all their phrases as references (`visual_genome.merge_regions`).
3. Every region is cropped and warped to `crop_size` (`region_crops`, with `context` source
   pixels around it) and the crops become caption records with the usual Beam job; words seen
   fewer than task.min_word_count times in the training phrases leave the vocabulary (they read
   as <unk>): the paper's count threshold, 15 for Visual Genome.
4. Two captioners of the preset's architecture get the same step budget: the full-frame model on
   whole images with their sentences (the preset's records: the world's captions, MSCOCO in the
   paper), the region model on the training crops. Both caption every merged test region and are
   scored against its phrases with pycocoevalcap (METEOR, the paper's Table 5 metric, and BLEU,
   ROUGE-L, CIDEr-D).
5. The region model is saved (`model.keras`, its records' assets in `data/`) and exported like any
   captioner (`captioning.export`: crop bytes in, captions out, beam search in the graph), so
   `python -m vcaption.export --run` works on the run too.

Where the paper is open: it fixes neither the grouping rule behind "IoU >= 0.7" (we follow
DenseCap's greedy `merge_boxes`, see `visual_genome.merge_groups`) nor whether training regions
are merged (we train on the raw ones: merging only serves the evaluation, per §4).

`task_args`: see `DEFAULT_TASK_ARGS`.
"""

from __future__ import annotations

import collections
import os
import time
from typing import Mapping

import keras
import tensorflow as tf

from vcaption import registry
from vcaption.captioning import evaluation
from vcaption.captioning.task import export_run_model
from vcaption.config import ExperimentConfig
from vcaption.datasets import visual_genome
from vcaption.datasets.base import DeadLetter
from vcaption.metrics import caption as caption_metrics
from vcaption.retrieval.region_captioning import caption_regions, public, train_captioner
from vcaption.retrieval.region_crops import write_region_dataset
from vcaption.runtime import builtin_data
from vcaption.runtime.run_directory import RunDirectory
from vcaption.runtime.task import Task, task_settings
from vcaption.serving import config as serving_config

DEFAULT_TASK_ARGS = {
    "regions": None,        # Visual Genome region_descriptions.json (or its directory); None: the world's
    "merge_iou": visual_genome.MERGE_IOU,  # evaluation boxes at IoU >= this are one region (§4: 0.7)
    "min_word_count": 15,   # vocabulary threshold on the training phrases (§4: 15 for Visual Genome)
    "crop_size": 32,        # side of the warped region crops (and the region model's input)
    "context": 8,           # source pixels of surroundings kept around every box (`crop_region`)
    "train_images": 1500,   # images whose regions train the region model (first of the split)
    "val_images": 100,      # images whose merged regions choose its best interval
    "test_images": 300,     # images whose merged regions are captioned and scored
    "full_frame_steps": 800,  # training steps of each captioner (equal budgets)
    "region_steps": 800,
}


def regions_by_split(examples, limits: Mapping[str, int], merge_iou: float) -> tuple[dict, dict, dict]:
    """Visual Genome examples -> the region items of `write_region_dataset`, per split.

    Args:
        examples: `visual_genome.read` output (`CaptionedImage`s with regions; `DeadLetter`s).
        limits: split -> how many images of it to use (the first ones; splits absent: unused).
        merge_iou: the IoU at which val/test boxes merge; train regions stay as published.

    Returns:
        ({split: [{"image_id", "box", "phrases"}]}, {image id: image path}, counts: {split:
        {"images", "boxes", "regions"}} and "dead_letters": the reader's `DeadLetter`s).
    """
    items, paths, dead = collections.defaultdict(list), {}, []
    counts = collections.defaultdict(lambda: {"images": 0, "boxes": 0, "regions": 0})
    for example in examples:
        if isinstance(example, DeadLetter):
            dead.append(example)
            continue
        split = example.split
        if split not in limits or counts[split]["images"] >= limits[split]:
            continue
        paths[example.id] = example.image_path
        if split == "train":
            regions = [(r.box, [r.phrase]) for r in example.regions]
        else:
            regions = visual_genome.merge_regions(example.regions, merge_iou)
        items[split].extend({"image_id": example.id, "box": box, "phrases": phrases}
                            for box, phrases in regions)
        counts[split]["images"] += 1
        counts[split]["boxes"] += len(example.regions)
        counts[split]["regions"] += len(regions)
    return dict(items), paths, {**counts, "dead_letters": dead}


def region_source(cfg: ExperimentConfig, args: Mapping) -> str:
    """The Visual Genome regions to read: task.regions, else the built-in world's."""
    if args["regions"]:
        return args["regions"]
    if cfg.data.data_dir:
        raise ValueError("task vg_region_caption: data.data_dir is set, so name the Visual Genome "
                         "regions too (--set task.regions=PATH/region_descriptions.json)")
    return os.path.join(builtin_data.world_dir(cfg.data), builtin_data.BUILTIN_SOURCES["vg"])


class VGRegionCaptioningTask(Task):
    """Like `RegionCaptioningTask`, several stages strung together by `run`."""

    name = "vg_region_caption"

    def prepare_data(self, cfg, run, verbose):
        # The full-frame model's records: whole images with their sentences.
        return builtin_data.prepared_data(cfg.data)

    def run(self, cfg: ExperimentConfig, output: str, strategy_name: str = "default",
            verbose: int = 1) -> dict:
        """Builds the region records, trains both captioners, prints Table 5, writes metrics.json
        and exports the region model."""
        if strategy_name != "default":
            raise ValueError("task vg_region_caption runs on the default strategy only")
        caption_metrics.require_java_for_preset(cfg)
        start = time.perf_counter()
        keras.utils.set_random_seed(cfg.train.seed)
        args = task_settings(cfg, DEFAULT_TASK_ARGS)
        run = RunDirectory(output)
        data = self.prepare_data(cfg, run, verbose)

        # 1-2. Raw training regions, merged evaluation regions.
        source = region_source(cfg, args)
        limits = {split: int(args[f"{split}_images"]) for split in ("train", "val", "test")}
        regions, paths, counts = regions_by_split(visual_genome.read(source), limits,
                                                  float(args["merge_iou"]))
        missing = [s for s in limits if not regions.get(s)]
        if missing:
            raise ValueError(f"{source}: no regions in split(s) {missing}")
        region_dir = run.file("region_data")
        tf.io.gfile.makedirs(region_dir)
        with tf.io.gfile.GFile(os.path.join(region_dir, "dead_letter_reader.jsonl"), "w") as f:
            f.write("".join(d.to_json() + "\n" for d in counts.pop("dead_letters")))

        # 3. Crops -> caption records with the usual Beam job (the min word count applies here).
        crop_size = int(args["crop_size"])
        dataset_path, written = write_region_dataset(regions, paths, crop_size, region_dir,
                                                     int(args["context"]))
        region_records = builtin_data.preprocess_once(
            "karpathy", dataset_path, run.file("region_records"),
            ["--image-size", str(crop_size), "--min-count", str(int(args["min_word_count"])),
             "--max-length", str(cfg.data.max_length)])
        run.keep_assets(region_records)  # the exported region model's vocabulary
        run.write_config(cfg, region_records, task_args=args, full_frame_data_dir=data.directory)
        references = sum(len(r["phrases"]) for r in regions["test"]) / len(regions["test"])
        print(f"regions of {source}: " + ", ".join(
            f"{s} {c['boxes']} boxes of {c['images']} images -> {c['regions']} regions"
            for s, c in counts.items())
              + f" (merged at IoU >= {args['merge_iou']}; {references:.2f} phrases per test region), "
              f"{written['dead_letter']} dead letters; vocabulary {region_records.vocabulary().size} tokens "
              f"(min word count {args['min_word_count']})")

        # 4. Equal budgets; both caption the same merged test regions.
        full, full_vocab, full_training = train_captioner(
            cfg, data, cfg.data.image_size, int(args["full_frame_steps"]), run.file("full_frame"),
            "full-frame captioner", verbose)
        region, region_vocab, region_training = train_captioner(
            cfg, region_records, crop_size, int(args["region_steps"]), run.file("region_level"),
            "region-level captioner", verbose)
        region.save(run.file("model.keras"))
        full_scores = caption_regions(full, full_vocab, region_records, cfg.data.image_size, cfg.decode)
        region_scores = caption_regions(region, region_vocab, region_records, crop_size, cfg.decode)
        rows = {"full-frame model": public(full_scores), "region-level model": public(region_scores)}

        result = {"preset": cfg.name, "task": "vg_region_caption", "split": "test",
                  "beam_size": cfg.decode.beam_size, "regions_source": source, "data_dir": data.directory,
                  "region_records": region_records.directory, "merge_iou": float(args["merge_iou"]),
                  "min_word_count": int(args["min_word_count"]),
                  "region_vocabulary": region_records.vocabulary().size, "counts": counts,
                  "references_per_test_region": round(references, 3), "dead_letter": written["dead_letter"],
                  "full_frame": {"metrics": rows["full-frame model"], "training": full_training},
                  "region_level": {"metrics": rows["region-level model"], "training": region_training}}
        run.write_json("region_captions_test.json",
                       {k: {"full_frame": full_scores["candidates"][k],
                            "region_level": region_scores["candidates"][k],
                            "references": region_scores["references"][k]}
                        for k in sorted(region_scores["candidates"])})
        # 5. The region model as a SavedModel.
        if cfg.export.saved_models_dir:
            result["export"] = export_run_model(region, cfg.to_dict(), run.data, cfg.export.saved_models_dir,
                                                cfg.export.name or cfg.name)
            print(f"SavedModel -> {result['export']}")
            if cfg.export.serving_config != "":
                serving_config.update(cfg.export.saved_models_dir, cfg.export.serving_config)
        result["seconds"] = round(time.perf_counter() - start, 1)
        metrics_path = run.write_metrics(result)
        title = (f"Table 5: {len(regions['test'])} merged test regions of {counts['test']['images']} images "
                 f"({references:.2f} phrases each), beam {cfg.decode.beam_size}")
        print(evaluation.format_table(rows, title))
        print(f"metrics -> {metrics_path}")
        return result

    def export_run(self, run, output, name, options):
        # The region model, with the region records' vocabulary kept in the run's data/.
        return export_run_model(registry.load_model(run.file("model.keras")), run.read_config(), run.data,
                                output, name, options.get("beam_size"), options.get("n_best"))
