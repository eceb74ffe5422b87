"""Region-level captioning (Karpathy & Fei-Fei §3.2, §4.3, Table 4), task "region_caption":

    python -m vcaption.train --preset karpathy_region_captioning --output runs/region_captioning \\
        [--set task.ranker=runs/karpathy_ranker]

1. Region–snippet training data, as the paper makes it: a trained region ranker (task.ranker, a
   `karpathy_ranker` run directory; trained here with its preset when absent) aligns every train/val
   sentence to the image's regions with the chain MRF (Eqs. 10–12, exact Viterbi, β of that run,
   chosen on val), and each run of words on one region becomes a snippet of that region
   (`vcaption.retrieval.alignment.region_snippet_dataset`, Visual Genome format, written to `alignments_<split>.json`).
2. Evaluation data: the ground-truth region annotations of the test images — never used in
   training: each object box's Visual Genome phrase (`region_descriptions.json`, "small red circle")
   plus the phrases that name that object in the image's ground-truth sentences ("a tiny red circle",
   "a red ball"; found from the generator's object attributes, `scenes.json`), so that a region has
   up to 6 references of 2-4 words (the VG phrase alone, 3 words, is scored too).
3. Every region is cropped from its source image and warped to `crop_size` pixels (R-CNN style, as the
   ranker does); the crops with their snippets (train, val) or annotations (test) become one
   Karpathy-format file preprocessed by the usual Beam job into caption records (`region_records/`).
4. Two captioners of the preset's architecture (lrcn_2f by default) get the same step budget: the
   full-frame model on whole images with their full sentences, the region-level model on the
   region crops with their snippets. Both caption every test region crop (the full-frame model sees
   it warped to its own input size) and are scored against the region annotations with
   pycocoevalcap (BLEU-1..4, METEOR, ROUGE-L, CIDEr-D): the paper's Table 4.

`task_args`: ranker, ranker_epochs, ranker_batch_size, world, max_regions, crop_size, context,
train_images, val_images, test_images, full_frame_steps, region_steps (see `DEFAULT_TASK_ARGS`).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import time
from typing import Iterable, Mapping, Sequence

import numpy as np
import tensorflow as tf

from vcaption import images, text
from vcaption.config import ExperimentConfig

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
# Regions -> caption records
# ---------------------------------------------------------------------------------------------
def crop_region(image: np.ndarray, box_xywh: Sequence[float], crop_size: int,
                context: int = 0) -> np.ndarray | None:
    """The pixels of one box, warped to `crop_size` squared (aspect not kept, as R-CNN crops are).

    Args:
        image: uint8 [H, W, 3].
        box_xywh: (x, y, width, height) in pixels (Visual Genome convention), clipped to the image.
        crop_size: side of the output.
        context: source pixels of surroundings kept on every side (R-CNN's context padding, but in
            source pixels: a small object then fills less of its crop than a large one, so that
            its scale stays visible after warping).

    Returns:
        uint8 [crop_size, crop_size, 3], or None when the clipped box is empty.

    Example:
        >>> crop_region(np.zeros((128, 128, 3), np.uint8), (10, 20, 30, 40), 32).shape
        (32, 32, 3)
    """
    height, width = image.shape[:2]
    x, y, w, h = (float(v) for v in box_xywh)
    x, y, w, h = x - context, y - context, w + 2 * context, h + 2 * context
    x0, y0 = max(0, int(round(x))), max(0, int(round(y)))
    x1, y1 = min(width, int(round(x + w))), min(height, int(round(y + h)))
    if x1 <= x0 or y1 <= y0:
        return None
    return images.resize_image(tf.constant(image[y0:y1, x0:x1]), crop_size).numpy()


def group_regions(entries: Iterable[Mapping]) -> list[dict]:
    """Visual Genome images -> one item per distinct (image, box) with all its phrases, in order.

    Returns:
        [{"image_id", "box": (x, y, width, height), "phrases": [str]}]
    """
    grouped: dict = collections.OrderedDict()
    for entry in entries:
        for region in entry["regions"]:
            box = tuple(int(region[k]) for k in ("x", "y", "width", "height"))
            key = (str(entry["id"]), box)
            grouped.setdefault(key, []).append(region["phrase"])
    return [{"image_id": image_id, "box": box, "phrases": phrases}
            for (image_id, box), phrases in grouped.items()]


def write_region_dataset(regions_by_split: Mapping[str, Sequence[Mapping]], image_paths: Mapping[str, str],
                         crop_size: int, output: str, context: int = 0) -> tuple[str, dict]:
    """Crops every region to `<output>/crops/*.png` and writes them, with their phrases, as one
    Karpathy-format file `<output>/dataset_regions.json` for `beam_jobs.preprocess --format karpathy`.

    Args:
        regions_by_split: split -> `group_regions` items.
        image_paths: image id -> path of its source image.
        crop_size: side of the crops.
        output: directory to write.
        context: source pixels of surroundings around every box (`crop_region`).

    Returns:
        (path of the dataset file, {"regions": {split: count}, "dead_letter": count}). Regions that
        cannot be cropped (unknown image, empty box) go to `<output>/dead_letter.jsonl` with the reason.
    """
    os.makedirs(os.path.join(output, "crops"), exist_ok=True)
    entries, counts, dead = [], collections.Counter(), []
    for split, regions in regions_by_split.items():
        for number, region in enumerate(regions):
            key = f"{split}_{region['image_id']}_{number}"
            path = image_paths.get(region["image_id"])
            if path is None:
                dead.append({"id": key, "reason": "unknown_image",
                             "detail": f"image {region['image_id']} not found"})
                continue
            with open(path, "rb") as f:
                image = images.decode_image(f.read()).numpy()
            crop = crop_region(image, region["box"], crop_size, context)
            if crop is None:
                dead.append({"id": key, "reason": "empty_box",
                             "detail": f"box {region['box']} outside {path}"})
                continue
            filename = f"{key}.png"
            tf.io.write_file(os.path.join(output, "crops", filename), tf.io.encode_png(crop))
            entries.append({"filepath": "crops", "filename": filename, "cocoid": key, "split": split,
                            "image_id": region["image_id"], "box": list(region["box"]),
                            "sentences": [{"raw": p} for p in region["phrases"]]})
            counts[split] += 1
    with open(os.path.join(output, "dead_letter.jsonl"), "w") as f:
        f.writelines(json.dumps(d) + "\n" for d in dead)
    path = os.path.join(output, "dataset_regions.json")
    with open(path, "w") as f:
        json.dump({"dataset": "regions", "images": entries}, f)
    return path, {"regions": dict(counts), "dead_letter": len(dead)}


# ---------------------------------------------------------------------------------------------
# The world: image files, annotated test regions
# ---------------------------------------------------------------------------------------------
def world_image_paths(world: str) -> tuple[dict[str, str], dict[str, str]]:
    """(image id -> file, image id -> split) from the world's COCO caption files (the ids of the
    ranker's records)."""
    paths, splits = {}, {}
    directory = os.path.join(world, "annotations")
    for name in sorted(os.listdir(directory)):
        if not name.startswith("captions_"):
            continue
        split = name.rsplit("_", 1)[1].split(".")[0]
        with open(os.path.join(directory, name)) as f:
            for image in json.load(f)["images"]:
                paths[str(image["id"])] = os.path.join(world, "images", image["file_name"])
                splits[str(image["id"])] = split
    if not paths:
        raise ValueError(f"{directory}: no captions_*.json with images")
    return paths, splits


def annotated_regions(world: str, image_ids: Sequence[str]) -> list[dict]:
    """The world's Visual Genome region annotations (phrase per object box) of `image_ids`, in that order."""
    with open(os.path.join(world, "visual_genome", "region_descriptions.json")) as f:
        by_id = {str(e["id"]): e for e in json.load(f)}
    missing = [i for i in image_ids if i not in by_id]
    if missing:
        raise ValueError(f"{world}/visual_genome/region_descriptions.json has no regions for images "
                         f"{missing[:5]}")
    return [by_id[i] for i in image_ids]


def sentence_phrases(tokens: Sequence[str], objects: Sequence[Mapping]) -> list[tuple[str, tuple]]:
    """[(phrase, object box)] for every phrase of a ground-truth sentence that names exactly one
    object ("[size] colour shape", `metrics.alignment.object_mentions`), with its article.

    Example:
        >>> sentence_phrases("a big red ball on the left".split(), [{"shape": "circle", "colour": "red",
        ...     "size": "large", "box": [1, 2, 3, 3]}])
        [('a big red ball', (1, 2, 3, 3))]
    """
    from vcaption.retrieval.alignment_metrics import object_mentions

    out = []
    for positions, k in object_mentions(tokens, objects):
        start = positions[0]
        if start > 0 and tokens[start - 1] in ARTICLES:
            start -= 1
        out.append((" ".join(tokens[start:positions[-1] + 1]), tuple(int(v) for v in objects[k]["box"])))
    return out


ARTICLES = ("a", "an", "the")


def region_references(world: str, image_ids: Sequence[str]) -> list[dict]:
    """Region annotations with several references: each object's Visual Genome phrase ("small red
    circle") plus the phrases that name it in its image's ground-truth sentences ("a tiny red
    circle", "a red ball"), located by the generator's known object attributes (scenes.json), as
    Visual Genome images. Objects no sentence names alone keep their one phrase."""
    from vcaption.retrieval.alignment_metrics import load_scenes

    scenes = load_scenes(os.path.join(world, "scenes.json"))
    sentences = collections.defaultdict(list)
    for name in sorted(os.listdir(os.path.join(world, "annotations"))):
        if name.startswith("captions_"):
            with open(os.path.join(world, "annotations", name)) as f:
                for annotation in json.load(f)["annotations"]:
                    sentences[str(annotation["image_id"])].append(annotation["caption"])
    entries = annotated_regions(world, image_ids)
    for entry in entries:
        image_id = str(entry["id"])
        objects = scenes[image_id]["objects"]
        for caption in sentences[image_id]:
            for phrase, (x, y, w, h) in sentence_phrases(text.normalized_caption(caption).split(), objects):
                entry["regions"].append({"image_id": entry["id"], "x": x, "y": y, "width": w, "height": h,
                                         "phrase": phrase})
    return entries


# ---------------------------------------------------------------------------------------------
# Aligned snippets from the ranker
# ---------------------------------------------------------------------------------------------
def load_ranker(cfg: ExperimentConfig, data_dir: str, output: str, verbose: int):
    """(ranker model, β): task.ranker's run, or one trained here with the karpathy_ranker preset."""
    import keras

    import vcaption.retrieval.ranker  # noqa: F401  (registers the classes for loading)
    from vcaption import config as config_lib
    from vcaption import presets

    run_dir = cfg.task_args.get("ranker")
    if not run_dir:
        from vcaption.retrieval import task as train_ranker

        run_dir = os.path.join(output, "ranker")
        if not os.path.exists(os.path.join(run_dir, "metrics.json")):
            ranker_cfg = presets.get_preset("karpathy_ranker")
            world = cfg.task_args.get("world") or os.path.join(cfg.data.shapes_root, "world")
            ranker_cfg = dataclasses.replace(
                ranker_cfg, data=dataclasses.replace(cfg.data, data_dir=data_dir),
                task_args={**ranker_cfg.task_args, "scenes": os.path.join(world, "scenes.json"),
                           "max_regions": int(cfg.task_args.get("max_regions", 5)),
                           "val_images": int(cfg.task_args.get("val_images", 200))},
                train=dataclasses.replace(ranker_cfg.train,
                                          epochs=int(cfg.task_args.get("ranker_epochs", 10)),
                                          batch_size=int(cfg.task_args.get("ranker_batch_size", 100))))
            train_ranker.run(ranker_cfg, run_dir, verbose=verbose)
    with open(os.path.join(run_dir, "metrics.json")) as f:
        metrics = json.load(f)
    if "alignment" not in metrics:
        raise ValueError(f"{run_dir}/metrics.json has no alignment result (β): "
                         "run the ranker with scenes.json")
    return keras.saving.load_model(os.path.join(run_dir, "model.keras")), float(metrics["alignment"]["beta"])


def aligned_snippets(ranker, beta: float, data_dir: str, split: str, max_regions: int, limit: int,
                     source_size: Sequence[int]) -> list[dict]:
    """The first `limit` images of a split, every sentence aligned and cut into region snippets
    (Visual Genome format)."""
    from vcaption.retrieval import alignment as align
    from vcaption.retrieval.task import embed_split

    embedded = embed_split(ranker, data_dir, split, max_regions, limit=limit)
    return align.region_snippet_dataset(embedded, beta, source_size)


# ---------------------------------------------------------------------------------------------
# Captioners
# ---------------------------------------------------------------------------------------------
def train_captioner(cfg: ExperimentConfig, data_dir: str, image_size: int, steps: int, output: str,
                    verbose: int):
    """A captioner of the preset's architecture trained for `steps` steps on `data_dir` (best val
    CIDEr-D interval kept); returns (model, vocabulary, training summary)."""
    from vcaption import train

    cfg = dataclasses.replace(
        cfg, data=dataclasses.replace(cfg.data, data_dir=data_dir, image_size=image_size, feature_dim=None),
        model_args={**cfg.model_args, "image_size": image_size})
    stats = train.read_stats(data_dir)
    vocab = text.Vocabulary(os.path.join(data_dir, "vocab.txt"))
    counts_path = os.path.join(data_dir, "vocab_counts.txt")
    word_counts = np.loadtxt(counts_path) if os.path.exists(counts_path) else None
    model = train.build_model(cfg, vocab.size, word_counts)
    # train.fit counts steps as epochs x ceil(train captions / batch): one "epoch" of `steps` steps.
    budget = dict(stats, captions={**stats["captions"], "train": steps * cfg.train.batch_size})
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=1))
    training = train.fit(model, cfg, data_dir, output, budget, verbose=verbose)
    training["train_captions"] = stats["captions"]["train"]
    return model, vocab, training


def caption_regions(model, vocab, region_dir: str, image_size: int, decode) -> dict:
    """Captions every test region crop (warped to `image_size`) and scores them against the region
    annotations; returns the pycocoevalcap metrics with "candidates" and "references"."""
    from vcaption.captioning import evaluation as evaluate
    from vcaption.metrics import caption as caption_metrics

    generation, _ = evaluate.eval_datasets(region_dir, "test", image_size, None)
    candidates, references, _ = evaluate.generate_captions(evaluate.make_generator(model, decode), vocab,
                                                           generation)
    scores = caption_metrics.score_captions(references, candidates, spice=False)
    return {**scores, "candidates": candidates, "references": references}


def _public(scores: Mapping) -> dict:
    return {k: round(float(v), 4) for k, v in scores.items() if not isinstance(v, dict)}


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------
def run(cfg: ExperimentConfig, output: str, strategy_name: str = "default", verbose: int = 1) -> dict:
    """Builds the region–snippet data, trains both captioners, prints Table 4, writes metrics.json."""
    import keras

    from beam_jobs import preprocess
    from vcaption.captioning import evaluation as evaluate
    from vcaption.metrics import caption as caption_metrics
    from vcaption.retrieval.task import prepare_region_data

    if strategy_name != "default":
        raise ValueError("task region_caption runs on the default strategy only")
    start = time.perf_counter()
    keras.utils.set_random_seed(cfg.train.seed)
    args = {**DEFAULT_TASK_ARGS, **cfg.task_args}
    os.makedirs(output, exist_ok=True)
    data_dir = cfg.data.data_dir or prepare_region_data(cfg.data)
    world = args["world"] or os.path.join(cfg.data.shapes_root, "world")
    with open(os.path.join(output, "config.json"), "w") as f:
        json.dump(cfg.to_dict() | {"data_dir": data_dir, "task_args": args}, f, indent=1)

    # 1-2. Aligned snippets (train, val) and annotated regions (test).
    ranker, beta = load_ranker(cfg, data_dir, output, verbose)
    paths, splits = world_image_paths(world)
    size = images.decode_image(tf.io.read_file(next(iter(paths.values())))).shape[:2]
    region_dir = os.path.join(output, "region_data")
    os.makedirs(region_dir, exist_ok=True)
    regions = {}
    for split in ("train", "val"):
        snippets = aligned_snippets(ranker, beta, data_dir, split, int(args["max_regions"]),
                                    int(args[f"{split}_images"]), size)
        with open(os.path.join(region_dir, f"alignments_{split}.json"), "w") as f:
            json.dump(snippets, f)
        regions[split] = group_regions(snippets)
    test_ids = [i for i in paths if splits[i] == "test"][: int(args["test_images"])]
    regions["test"] = group_regions(region_references(world, test_ids))
    alignment_seconds = time.perf_counter() - start

    # 3. Crops -> caption records with the usual Beam job.
    crop_size = int(args["crop_size"])
    dataset_path, written = write_region_dataset(regions, paths, crop_size, region_dir, int(args["context"]))
    region_records = os.path.join(output, "region_records")
    preprocess.run(["--format", "karpathy", "--input", dataset_path, "--output", region_records,
                    "--image-size", str(crop_size), "--min-count", str(cfg.data.min_count),
                    "--max-length", str(cfg.data.max_length)])
    print(f"region data: {written['regions']} regions ({written['dead_letter']} dead letters), "
          f"snippets of {args['train_images']} train / {args['val_images']} val images aligned with "
          f"beta = {beta:.3g}; test = annotated regions of {len(test_ids)} images")

    # 4. Equal budgets; both caption the same test crops.
    full, full_vocab, full_training = train_captioner(
        cfg, data_dir, cfg.data.image_size, int(args["full_frame_steps"]), os.path.join(output, "full_frame"),
        verbose)
    region, region_vocab, region_training = train_captioner(
        dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, captions_per_image=1)),
        region_records, crop_size, int(args["region_steps"]), os.path.join(output, "region_level"), verbose)
    full_scores = caption_regions(full, full_vocab, region_records, cfg.data.image_size, cfg.decode)
    region_scores = caption_regions(region, region_vocab, region_records, crop_size, cfg.decode)
    rows = {"full-frame model": _public(full_scores), "region-level model": _public(region_scores)}
    # Also against the Visual Genome phrase alone (each region's first reference): one 3-word
    # reference, so BLEU-4 has no reference 4-grams to match there.
    vg_rows = {}
    for name, scores in (("full-frame model", full_scores), ("region-level model", region_scores)):
        vg_rows[name] = _public(caption_metrics.score_captions(
            {k: v[:1] for k, v in scores["references"].items()}, scores["candidates"], spice=False))

    result = {"preset": cfg.name, "task": "region_caption", "split": "test",
              "beam_size": cfg.decode.beam_size,
              "data_dir": data_dir, "region_records": region_records, "beta": beta,
              "regions": written["regions"], "dead_letter": written["dead_letter"],
              "test_images": len(test_ids),
              "full_frame": {"metrics": rows["full-frame model"], "training": full_training},
              "region_level": {"metrics": rows["region-level model"], "training": region_training},
              "visual_genome_phrase_only": vg_rows,
              "alignment_seconds": round(alignment_seconds, 1),
              "seconds": round(time.perf_counter() - start, 1)}
    with open(os.path.join(output, "metrics.json"), "w") as f:
        json.dump(result, f, indent=1)
    with open(os.path.join(output, "region_captions_test.json"), "w") as f:
        json.dump({k: {"full_frame": full_scores["candidates"][k],
                       "region_level": region_scores["candidates"][k],
                       "references": region_scores["references"][k]}
                   for k in sorted(region_scores["candidates"])}, f, indent=1)
    title = (f"region annotations of the test split ({written['regions']['test']} regions: Visual Genome "
             f"phrase + the object's phrases in the 5 sentences), beam {cfg.decode.beam_size}")
    print(evaluate.format_table(rows, title))
    print(evaluate.format_table(vg_rows, "the same, against the Visual Genome phrase alone"))
    print(f"metrics -> {os.path.join(output, 'metrics.json')}")
    return result
