"""Caption metrics through pycocoevalcap (the COCO caption evaluation code), and perplexity.

Scores use pycocoevalcap's own key names — Bleu_1..Bleu_4, METEOR, ROUGE_L, CIDEr (its CIDEr scorer
is CIDEr-D: clipped n-gram counts and a Gaussian length penalty) and SPICE — so that metrics.json
files compare directly with published numbers. References and candidates both go through the PTB
tokenizer, as in the official evaluation. METEOR and the tokenizer need Java (`java` on PATH):
`require_java` says what to install, and commands that will score captions call it before any
work.
SPICE also needs the Stanford CoreNLP jars, which pycocoevalcap downloads on first use; offline,
SPICE is skipped with a one-line notice.
"""

from __future__ import annotations

import collections
import contextlib
import io
import json
import math
import os
import shutil
import sys
import tempfile
from typing import Mapping, Sequence

CAPTION_METRICS = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr")


def ngram_counts(caption: str, n_max: int) -> collections.Counter:
    """Counts of the 1- to `n_max`-grams (word tuples) of a whitespace-tokenized caption."""
    words = caption.split()
    return collections.Counter(tuple(words[i:i + n]) for n in range(1, n_max + 1)
                               for i in range(len(words) - n + 1))
JAVA_INSTALL = ("install a Java runtime (8 or later) and put `java` on PATH, e.g. "
                "`sudo apt-get install -y default-jre-headless` (Debian/Ubuntu), "
                "`conda install -c conda-forge openjdk` (conda, no root needed) or `brew install openjdk` (macOS)")


class JavaNotFound(RuntimeError):
    """`java` is not on PATH, and pycocoevalcap's PTB tokenizer and METEOR run on it."""


def require_java(needed_by: str) -> None:
    """Raises `JavaNotFound`, naming `needed_by` and what to install, when `java` is not on PATH.

    Commands that will score captions call it first, so that a missing Java stops them within
    seconds instead of after minutes of data generation and training.
    """
    if shutil.which("java") is None:
        raise JavaNotFound(f"{needed_by} scores captions with pycocoevalcap, whose PTB tokenizer and "
                           f"METEOR run on Java, and `java` is not on PATH: {JAVA_INSTALL}")


def require_java_for_preset(cfg) -> None:
    """`require_java` for a preset (an `ExperimentConfig`) whose task scores captions
    (`registry.TASKS_SCORING_CAPTIONS`), in the process that evaluates (the chief)."""
    from vcaption import registry
    from vcaption.runtime import devices

    if cfg.task in registry.TASKS_SCORING_CAPTIONS and devices.is_chief():
        require_java(f"the {cfg.name} preset")


def _spice_available() -> bool:
    from pycocoevalcap import spice

    lib = os.path.join(os.path.dirname(spice.__file__), "lib", "stanford-corenlp-3.6.0.jar")
    return os.path.exists(lib)


@contextlib.contextmanager
def _child_stderr_captured():
    """Sends what child processes (the PTB tokenizer's Java) write on stderr to a buffer, shown
    only when the block fails: it prints a "tokenized N tokens" line per call otherwise."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _tokenize(captions: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    with _child_stderr_captured():
        return PTBTokenizer().tokenize({k: [{"caption": c} for c in v] for k, v in captions.items()})


_meteor = None


def _shared_meteor(meteor_class):
    """One METEOR scorer for the whole process. Its JVM takes ~6 s to start and load the paraphrase
    tables, and its first sets run before the JIT has warmed up (on a busy machine the first 1,800
    captions took 208 s, the same captions again 6 s); the scores are the same either way (METEOR
    scores each segment alone and aggregates per EVAL request, as pycocoevalcap's COCOEvalCap does)."""
    global _meteor
    if _meteor is None or _meteor.meteor_p.poll() is not None:
        _meteor = meteor_class()
    return _meteor


def score_captions(references: Mapping[str, Sequence[str]], candidates: Mapping[str, str],
                   metrics: Sequence[str] = CAPTION_METRICS, spice: bool = True,
                   per_image: bool = False) -> dict:
    """Corpus-level caption metrics of one candidate per image against its references.

    Args:
        references: image id -> reference captions.
        candidates: image id -> generated caption; must cover exactly the ids of `references`.
        metrics: which pycocoevalcap metrics to compute.
        spice: also compute SPICE when its Java models are installed.
        per_image: also return "per_image": {id: {metric: score}}.
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge

    if set(references) != set(candidates):
        missing = set(references) ^ set(candidates)
        raise ValueError(f"references and candidates cover different images, e.g. {sorted(missing)[:5]}")
    if not references:
        raise ValueError("no captions to score")
    require_java("score_captions")
    # One tokenizer launch (a JVM start) for both sides: PTB tokenization is per sentence.
    tokenized = _tokenize({**{("ref", k): v for k, v in references.items()},
                           **{("cand", k): [v] for k, v in candidates.items()}})
    gts = {k: tokenized[("ref", k)] for k in references}
    res = {k: tokenized[("cand", k)] for k in candidates}
    ids = sorted(gts)
    scorers = []
    if any(m.startswith("Bleu") for m in metrics):
        scorers.append((Bleu(4), ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4"]))
    if "METEOR" in metrics:
        scorers.append((_shared_meteor(Meteor), ["METEOR"]))
    if "ROUGE_L" in metrics:
        scorers.append((Rouge(), ["ROUGE_L"]))
    if "CIDEr" in metrics:
        scorers.append((Cider(), ["CIDEr"]))
    if spice and "SPICE" not in metrics and _spice_available():
        from pycocoevalcap.spice.spice import Spice

        scorers.append((Spice(), ["SPICE"]))
    elif spice and not _spice_available():
        print("SPICE skipped: the Stanford CoreNLP models are not installed (pycocoevalcap downloads "
              "them on first use; offline here).", file=sys.stderr)

    results: dict = {}
    per: dict[str, dict] = {i: {} for i in ids}
    for scorer, names in scorers:
        # pycocoevalcap's BLEU prints its length statistics on stdout: not ours to show.
        with contextlib.redirect_stdout(io.StringIO()):
            corpus, images = scorer.compute_score({i: gts[i] for i in ids}, {i: res[i] for i in ids})
        if len(names) == 1:
            corpus, images = [corpus], [images]
        for name, value, values in zip(names, corpus, images):
            if name in metrics or name == "SPICE":
                results[name] = float(value)
                for i, v in zip(ids, values):
                    per[i][name] = float(v["All"]["f"]) if isinstance(v, dict) else float(v)
    if per_image:
        results["per_image"] = per
    return results


def perplexity(total_neg_log_likelihood: float, total_tokens: int) -> float:
    """exp(mean negative log-likelihood per predicted token, <end> included)."""
    return math.exp(total_neg_log_likelihood / max(total_tokens, 1))


def load_coco_results(results_path: str, annotations_path: str) -> tuple[dict, dict]:
    """(references, candidates) from a COCO results file and COCO caption annotations.

    Results: `[{"image_id": int, "caption": str}]`; when an image has several results, the first is
    scored. Only images present in the results are scored.
    """
    with open(results_path) as f:
        results = json.load(f)
    with open(annotations_path) as f:
        annotations = json.load(f)
    candidates: dict[str, str] = {}
    for r in results:
        candidates.setdefault(str(r["image_id"]), r["caption"])
    references: dict[str, list[str]] = {}
    for a in annotations["annotations"]:
        if str(a["image_id"]) in candidates:
            references.setdefault(str(a["image_id"]), []).append(a["caption"])
    unknown = set(candidates) - set(references)
    if unknown:
        raise ValueError(f"{results_path}: results for images without annotations in "
                         f"{annotations_path}: {sorted(unknown)[:5]}")
    return references, candidates
