"""Novel object captioning (task "noc"): the Novel Object Captioner and its baselines in one run.

    python -m vcaption.train --preset noc [--set task.glove=glove.6B.300d.txt --set model.embedding_dim=300]

Data: the paired records (the NOC shapes world by default, `data.shapes_noc`), the unpaired
labelled images (`task.image_labels`, an `image<TAB>label,label` list) and the unpaired text
(`task.text_corpus`, one sentence per line); the world's defaults are `<world>/noc/`.
Embeddings W_glove: `task.glove` (a GloVe-format file), else PPMI + SVD trained here on the text
corpus, cached as `<run>/embeddings_ppmi_svd.txt` (GloVe format).

Systems, all for the same number of steps (with `train.baselines`, the default):

* `<preset>`: NOC, the three losses trained **jointly** (Insight 3): every step sums the
  image-text loss of a paired batch, the text-specific loss of a text batch and the
  image-specific loss of a labelled-image batch (mixed batches, `noc.data.joint_dataset`);
* `paired_only`: the same captioner trained on the paired data alone (image-text loss only): it
  cannot know the held-out words;
* `pretrain_finetune`: the lecture's "init parameters" path: the visual network and language
  model pre-trained on their own losses, then fine-tuned on paired data alone ("Problem:
  forgetting");
* `lrcn_2f`: the LRCN-2f captioner (`vcaption.captioning.lrcn`) on the same paired data, the
  reference CIDEr-D on the images without held-out objects.

Evaluation on the test split (beam search): the DCC/NOC protocol (`noc.metrics`: F1 of naming
each held-out word), pycocoevalcap metrics on the test images with a held-out object and on the
others; `metrics.json` gets the `noc` block, `results_test.json` the NOC model's captions
(`results_test_<system>.json` the baselines'). Export: the NOC captioner with its vocabulary
(captions' words + the corpus-only words), through the captioner export (`captioning.export`).
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

from vcaption import data as data_lib
from vcaption import registry, text
from vcaption.captioning import evaluation
from vcaption.captioning.task import export_run_model
from vcaption.config import ExperimentConfig
from vcaption.losses import MaskedCaptionLoss
from vcaption.metrics import caption as caption_metrics
from vcaption.noc import data as noc_data
from vcaption.noc import embeddings, metrics
from vcaption.runtime import builtin_data, trainer
from vcaption.runtime.prepared_data import PreparedData
from vcaption.runtime.run_directory import RunDirectory
from vcaption.runtime.task import System, Task, Trained, task_settings

DEFAULTS = {
    "image_labels": None,  # an `image<TAB>label,label` list; None: the NOC world's noc/image_labels.txt
    "text_corpus": None,  # one sentence per line; None: the NOC world's noc/text_corpus.txt
    "glove": None,  # a GloVe-format file; None: PPMI + SVD on the text corpus
    "held_out": None,  # the held-out words; None: the world's scenes.json "noc" block
    "scenes": None,  # scenes.json of the test images' objects; None: the built-in world's
    "corpus_min_count": 5,  # corpus words seen fewer times are not added to the vocabulary
    # The LRCN-2f reference: the `lrcn_2f` preset's sizes.
    "lrcn_args": {"variant": "2f", "hidden_units": 256, "embedding_dim": 128, "dropout": 0.0},
}
NOC_DATA = "noc_data"  # <run>/noc_data/vocab.txt: the NOC vocabulary (a PreparedData's layout)
EMBEDDINGS_CACHE = "embeddings_ppmi_svd.txt"
SYSTEMS = ("paired_only", "pretrain_finetune", "lrcn_2f")


def settings(cfg: ExperimentConfig) -> dict:
    found = task_settings(cfg, DEFAULTS)
    world = None if cfg.data.data_dir else builtin_data.world_dir(cfg.data)
    for key, name in (("image_labels", "image_labels.txt"), ("text_corpus", "text_corpus.txt")):
        if found[key] is None:
            if world is None:
                raise ValueError(f"task.{key} is required with data.data_dir (the built-in NOC world has one)")
            found[key] = os.path.join(world, "noc", name)
    found["scenes"] = builtin_data.scenes_path(cfg.data, found["scenes"])
    return found


def load_contains(scenes_path: str) -> tuple[dict[str, set], list[str]]:
    """({image id: classes in it}, the world's held-out words) from a scenes.json."""
    with tf.io.gfile.GFile(scenes_path) as f:
        scenes = json.load(f)
    contains = {str(s["id"]): {o["shape"] for o in s["objects"]} for s in scenes["images"]}
    return contains, list(scenes.get("noc", {}).get("held_out", []))


class NOCResources:
    """What every NOC system shares: the vocabulary, the classes and W_glove (built once per run)."""

    def __init__(self, cfg: ExperimentConfig, data: PreparedData, run: RunDirectory):
        self.cfg, self.data, self.run = cfg, data, run
        self.settings = settings(cfg)
        self.sentences = noc_data.read_corpus(self.settings["text_corpus"])
        self.labelled = noc_data.read_image_labels(self.settings["image_labels"])
        self.classes = sorted({label for _, labels in self.labelled for label in labels})
        tokens = [s.split() for s in text.normalized_captions(self.sentences)]
        words = noc_data.extended_vocabulary(data.vocabulary().words, tokens, self.settings["corpus_min_count"])
        missing = [c for c in self.classes if c not in words]
        if missing:
            raise ValueError(f"image label classes {missing} are not words of the captions or of "
                             f"{self.settings['text_corpus']}: the captioner could never say them")
        self.noc_data = PreparedData(run.file(NOC_DATA))
        text.Vocabulary.write(words[len(text.RESERVED_TOKENS):], self.noc_data.vocabulary_path)
        self.vocabulary = self.noc_data.vocabulary()
        self.class_word_ids = [words.index(c) for c in self.classes]
        dim = int(cfg.model_args.get("embedding_dim", 64))
        self.matrix, found = embeddings.embedding_matrix(words, self._vectors(tokens, words, dim), dim, cfg.train.seed)
        print(f"NOC vocabulary: {len(words)} words ({len(words) - data.vocabulary().size} from the text corpus "
              f"only); W_glove rows from embeddings: {found}; classes: {self.classes}")

    def _vectors(self, tokens, words, dim) -> dict:
        if self.settings["glove"]:
            return embeddings.load_glove(self.settings["glove"], words)
        cache = self.run.file(EMBEDDINGS_CACHE)
        if not tf.io.gfile.exists(cache):
            embeddings.write_glove(cache, embeddings.train_ppmi_svd(tokens, dim))
        return embeddings.load_glove(cache)

    def build(self):
        model = registry.build("NOCCaptioner", vocab_size=self.vocabulary.size, class_word_ids=self.class_word_ids,
                               **self.cfg.model_args)
        model.set_word_embeddings(self.matrix)
        return model

    def dataset(self, objectives) -> tf.data.Dataset:
        """Mixed batches holding what `objectives` need (each batch `train.batch_size`)."""
        cfg, tcfg = self.cfg, self.cfg.train
        paired = sentences = labelled = None
        if "caption" in objectives:
            paired = data_lib.make_dataset(self.data.directory, "train", "caption", batch_size=tcfg.batch_size,
                                           image_size=cfg.data.image_size, seed=tcfg.seed, repeat=True)
        if "text" in objectives:
            sentences = noc_data.sentences_dataset(self.sentences, self.vocabulary, cfg.data.max_length,
                                                   tcfg.batch_size, tcfg.seed)
        if "image" in objectives:
            labelled = noc_data.labelled_images(self.labelled, self.classes, cfg.data.image_size,
                                                tcfg.batch_size, tcfg.seed)
        return noc_data.joint_dataset(paired, sentences, labelled)

    def plan(self, model, name: str, objectives, prefix: str = "") -> trainer.TrainingPlan:
        model.objectives = tuple(objectives)
        return trainer.TrainingPlan(name, self.dataset(objectives), self.steps_per_epoch(), prefix=prefix)

    def steps_per_epoch(self) -> int:
        return trainer.steps_per_epoch(self.data.stats["captions"]["train"], self.cfg.train.batch_size)

    def pretrained(self, verbose: int = 2):
        """A NOC model after the pre-training phase of `pretrain_finetune`: the visual network on
        the labelled images and the language model on the text, each its own loss, no paired data."""
        model = self.build()
        trainer.fit(model, self.plan(model, "pretrain (image + text)", ("image", "text"), prefix="pretrain_"),
                    self.cfg.train, self.run.path, verbose)
        return model


def lrcn_reference(cfg: ExperimentConfig, data: PreparedData, resources: NOCResources) -> System:
    """LRCN-2f on the same paired records, the same encoder and the same step budget."""
    args = {**DEFAULTS["lrcn_args"], **resources.settings["lrcn_args"]}
    encoder = {k: cfg.model_args[k] for k in ("encoder", "image_size") if k in cfg.model_args}

    def plan(model):
        train = data_lib.make_dataset(data.directory, "train", "caption", batch_size=cfg.train.batch_size,
                                      image_size=cfg.data.image_size, seed=cfg.train.seed, repeat=True)
        return trainer.TrainingPlan("lrcn_2f", train, resources.steps_per_epoch(), prefix="lrcn_2f_",
                                    loss=MaskedCaptionLoss())

    return System("lrcn_2f", lambda: registry.build("LRCNCaptioner", vocab_size=data.vocabulary().size,
                                                    **args, **encoder), plan, "lrcn_2f.keras")


class NOCTask(Task):
    name = "noc"

    def prepare_data(self, cfg, run, verbose):
        return builtin_data.prepared_data(cfg.data)

    def systems(self, cfg, data, run):
        resources = NOCResources(cfg, data, run)
        self.resources = resources
        systems = [System(cfg.name, resources.build,
                          lambda model: resources.plan(model, cfg.name, ("image", "text", "caption")))]
        if cfg.train.baselines:
            systems += [
                System("paired_only", resources.build,
                       lambda model: resources.plan(model, "paired only", ("caption",), prefix="paired_only_"),
                       "paired_only.keras"),
                System("pretrain_finetune", lambda: resources.pretrained(self.verbose),
                       lambda model: resources.plan(model, "fine-tune (paired)", ("caption",), prefix="finetune_"),
                       "pretrain_finetune.keras"),
                lrcn_reference(cfg, data, resources)]
        return systems

    def evaluate(self, cfg, data, trained: dict[str, Trained], run: RunDirectory) -> dict:
        resources = getattr(self, "resources", None) or NOCResources(cfg, data, run)
        contains, world_held_out = load_contains(resources.settings["scenes"])
        held_out = list(resources.settings["held_out"] or world_held_out)
        if not held_out:
            raise ValueError("no held-out words: set task.held_out or use a world whose scenes.json has a noc block")
        rows, blocks = {}, {}
        for name, result in trained.items():
            vocabulary = data.vocabulary() if name == "lrcn_2f" else resources.vocabulary
            candidates, references = generate(result.model, vocabulary, data, cfg)
            evaluation.write_results(run.file("results_test.json" if name == cfg.name else f"results_test_{name}.json"),
                                     candidates)
            blocks[name] = metrics.noc_block(candidates, contains, held_out)
            if name != "lrcn_2f":  # why a word goes unsaid: unseen by the visual network, or outvoted
                blocks[name]["visual_network"] = metrics.classifier_recall(
                    visual_network_scores(result.model, resources, data, cfg), contains, resources.classes)
                blocks[name]["said_instead"] = {w: metrics.said_instead(candidates, contains, w, resources.classes)
                                                for w in held_out}
            rows[name] = subset_scores(candidates, references, contains, held_out)
        result = {"preset": cfg.name, "split": "test", "beam_size": cfg.decode.beam_size,
                  "data_dir": data.directory, "training": {n: t.training for n, t in trained.items()},
                  "model": rows[cfg.name],
                  "noc": {**blocks[cfg.name], "test_images": rows[cfg.name]["images"],
                          "baselines": {n: {**blocks[n], **{part: rows[n].get(part) for part in
                                                             ("held_out_images", "other_images")}}
                                        for n in trained if n != cfg.name}},
                  "baselines": {n: rows[n] for n in trained if n != cfg.name}}
        print(format_table(cfg.name, rows, blocks, held_out))
        print(format_diagnosis(cfg.name, blocks[cfg.name], held_out))
        return result

    def export(self, cfg, data, trained, run):
        return export_run_model(trained[cfg.name].model, cfg.to_dict(), PreparedData(run.file(NOC_DATA)),
                                cfg.export.saved_models_dir, cfg.export.name or cfg.name)

    def export_run(self, run, output, name, options):
        return export_run_model(registry.load_model(run.file("model.keras")), run.read_config(),
                                PreparedData(run.file(NOC_DATA)), output, name, options.get("beam_size"),
                                options.get("n_best"))


def generate(model, vocabulary: text.Vocabulary, data: PreparedData, cfg: ExperimentConfig):
    """(image id -> caption, image id -> references) of the test split, beam search of `cfg.decode`."""
    dataset = data_lib.make_dataset(data.directory, "test", "caption_eval", batch_size=64,
                                    image_size=cfg.data.image_size)
    candidates, references, _ = evaluation.generate_captions(
        evaluation.make_generator(model, cfg.decode), vocabulary, dataset)
    return candidates, references


def visual_network_scores(model, resources: NOCResources, data: PreparedData,
                          cfg: ExperimentConfig) -> dict[str, dict[str, float]]:
    """image id -> {class: the visual network's score of the class word} on the test split."""
    dataset = data_lib.make_dataset(data.directory, "test", "caption_eval", batch_size=64,
                                    image_size=cfg.data.image_size)
    scores = {}
    for batch in dataset:
        values = tf.gather(model.visual_scores(model.encode_visual(batch["visual"])),
                           resources.class_word_ids, axis=1).numpy()  # [batch, classes]
        for image_id, row in zip(batch["image_id"].numpy(), values):
            scores[image_id.decode()] = dict(zip(resources.classes, row.tolist()))
    return scores


def format_diagnosis(name: str, block: dict, held_out: list[str]) -> str:
    """The visual network's recall of each held-out class and what the captions said instead."""
    return "\n".join(
        f"{name} {w}: visual network precision {block['visual_network'][w]['precision']:.3f} "
        f"recall {block['visual_network'][w]['recall']:.3f}; captions missing it ({block['said_instead'][w]['missed']}) "
        f"name {({k: v for k, v in block['said_instead'][w].items() if k != 'missed'})}" for w in held_out)


def subset_scores(candidates, references, contains, held_out) -> dict:
    """pycocoevalcap metrics on the test images holding a held-out object and on the others (two
    separate corpora: CIDEr-D's document frequencies are those of each part)."""
    held = {i for i in candidates if contains.get(i, set()) & set(held_out)}
    parts = {"held_out_images": held, "other_images": set(candidates) - held}
    scores = {"images": {part: len(ids) for part, ids in parts.items()}}
    for part, ids in parts.items():
        if ids:
            scores[part] = caption_metrics.score_captions({i: references[i] for i in ids},
                                                          {i: candidates[i] for i in ids}, spice=False)
    return scores


def format_table(name: str, rows: dict, blocks: dict, held_out: list[str]) -> str:
    """One line per system: held-out F1 (per word, mean), CIDEr-D and METEOR on both image sets."""
    header = (f"{'system':<20}" + "".join(f"{'F1 ' + w:>12}" for w in held_out) + f"{'mean F1':>9}"
              + f"{'CIDEr-D held':>14}{'METEOR held':>13}{'CIDEr-D other':>15}{'METEOR other':>14}")
    lines = [f"test split: novel objects {held_out}", header, "-" * len(header)]
    for system, row in rows.items():
        block = blocks[system]

        def metric(part, key):
            return f"{row[part][key]:.3f}" if part in row else "-"

        lines.append(f"{system:<20}" + "".join(f"{block['f1'][w]:>12.3f}" for w in held_out)
                     + f"{block['mean_f1']:>9.3f}" + f"{metric('held_out_images', 'CIDEr'):>14}"
                     + f"{metric('held_out_images', 'METEOR'):>13}{metric('other_images', 'CIDEr'):>15}"
                     + f"{metric('other_images', 'METEOR'):>14}")
    return "\n".join(lines)
