"""Caption diversity: how much a captioner copies, repeats itself and uses of the human vocabulary.

Karpathy & Fei-Fei (PAMI, §4 "Qualitative") find 60% of their generated captions verbatim in the
training data with beam size 7 and 25% with beam size 1; Donahue et al. (LRCN, §5) find 33.7%, and
that greedy decoding uses 42% of the words the human annotators used for the same images. These
statistics measure the same things for any set of generated captions:

* `copied_from_training`: share of generated captions found verbatim among the training captions
  (Karpathy & Fei-Fei §4; LRCN §5);
* `distinct_captions`: distinct generated captions / number of images (1 = every image its own
  caption; a captioner that says one sentence everywhere scores 1 / images);
* `vocabulary_used`: distinct words in the generated captions; `reference_vocabulary`: distinct
  words in the references of the same images; `vocabulary_coverage`: share of the references'
  words that the captioner generates at least once (LRCN §5's 42%);
* `distinct_1`, `distinct_2`: distinct uni-/bigrams over all uni-/bigrams of the generated captions
  (Li et al., "A Diversity-Promoting Objective Function for Neural Conversation Models", 2016),
  bigrams within a caption only.

Captions are compared as given, words split on whitespace: pass them normalized one way
(`vcaption.text.normalized_captions`, what the decoders' vocabulary produces) so that "A red
circle." and "a red circle" are one caption.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

# Keys of `diversity_scores` that are shares in [0, 1] (the others are word counts).
SHARES = ("copied_from_training", "distinct_captions", "vocabulary_coverage", "distinct_1", "distinct_2")


def distinct_n(captions: Iterable[str], n: int) -> float:
    """Distinct n-grams / n-grams over all `captions` (n-grams never cross captions); 0 without any."""
    grams = [tuple(words[i:i + n]) for words in (c.split() for c in captions)
             for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def vocabulary(captions: Iterable[str]) -> set[str]:
    return {word for caption in captions for word in caption.split()}


def diversity_scores(candidates: Mapping[str, str], references: Mapping[str, Sequence[str]] | None,
                     training_captions: Iterable[str] | None) -> dict:
    """The diversity statistics (module docstring) of one caption per image.

    Args:
        candidates: image id -> generated caption.
        references: image id -> that image's reference captions (for the vocabulary coverage);
            None leaves the reference keys out.
        training_captions: every training caption (for the copy rate); None leaves it out.

    Returns:
        {"images", "copied_from_training", "distinct_captions", "vocabulary_used",
        "reference_vocabulary", "vocabulary_coverage", "distinct_1", "distinct_2"}; shares are 0
        for no candidates.
    """
    captions = list(candidates.values())
    images = len(captions)
    used = vocabulary(captions)
    scores = {"images": images,
              "distinct_captions": len(set(captions)) / images if images else 0.0,
              "vocabulary_used": len(used),
              "distinct_1": distinct_n(captions, 1),
              "distinct_2": distinct_n(captions, 2)}
    if training_captions is not None:
        seen = training_captions if isinstance(training_captions, (set, frozenset)) else set(training_captions)
        scores["copied_from_training"] = sum(c in seen for c in captions) / images if images else 0.0
    if references is not None:
        human = vocabulary(r for image_id in candidates for r in references.get(image_id, ()))
        scores["reference_vocabulary"] = len(human)
        scores["vocabulary_coverage"] = len(used & human) / len(human) if human else 0.0
    return scores
