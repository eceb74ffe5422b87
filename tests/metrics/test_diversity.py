"""vcaption.metrics.diversity on hand-written captions, every figure counted by hand."""

import pytest

from vcaption.metrics import diversity

TRAINING = ["a red circle", "a blue square above a red circle", "two green triangles"]
CANDIDATES = {  # image id -> generated caption
    "1": "a red circle",  # verbatim in training
    "2": "a red circle",  # verbatim, and a repeat of image 1's
    "3": "a blue circle",  # new
    "4": "two green triangles",  # verbatim
}
REFERENCES = {
    "1": ["a red circle", "one red circle"],
    "2": ["a small red circle"],
    "3": ["a blue circle", "a big blue disc"],
    "4": ["two green triangles"],
    "5": ["an unrelated purple word"],  # no candidate: its words are not in the references' vocabulary
}


def test_copy_rate_distinct_captions_and_vocabulary():
    scores = diversity.diversity_scores(CANDIDATES, REFERENCES, TRAINING)
    assert scores["images"] == 4
    assert scores["copied_from_training"] == 3 / 4  # images 1, 2, 4
    assert scores["distinct_captions"] == 3 / 4  # {a red circle, a blue circle, two green triangles}
    # generated words: a red circle blue two green triangles
    assert scores["vocabulary_used"] == 7
    # reference words of images 1-4: a red circle one small blue big disc two green triangles
    assert scores["reference_vocabulary"] == 11
    assert scores["vocabulary_coverage"] == 7 / 11


def test_distinct_n():
    captions = list(CANDIDATES.values())
    # unigrams: 3 + 3 + 3 + 3 = 12 tokens, 7 distinct
    assert diversity.distinct_n(captions, 1) == 7 / 12
    # bigrams: (a red)(red circle) x2, (a blue)(blue circle), (two green)(green triangles) = 8, 6 distinct
    assert diversity.distinct_n(captions, 2) == 6 / 8
    assert diversity.distinct_n(["a red circle", "a red circle"], 2) == 2 / 4
    # Bigrams never span two captions: "circle a" is not counted.
    assert diversity.distinct_n(["circle", "a"], 2) == 0.0
    scores = diversity.diversity_scores(CANDIDATES, None, None)
    assert (scores["distinct_1"], scores["distinct_2"]) == (7 / 12, 6 / 8)


def test_optional_inputs_and_empty_candidates():
    scores = diversity.diversity_scores(CANDIDATES, None, None)
    assert "copied_from_training" not in scores and "vocabulary_coverage" not in scores
    empty = diversity.diversity_scores({}, {}, [])
    assert empty["images"] == 0 and empty["copied_from_training"] == 0.0
    assert empty["distinct_captions"] == empty["distinct_1"] == empty["vocabulary_coverage"] == 0.0


@pytest.mark.parametrize("caption,copied", [("a red circle", 1.0), ("a red circle above", 0.0),
                                            ("red circle", 0.0)])
def test_copies_are_whole_captions(caption, copied):
    """A prefix or a substring of a training caption is not a copy: only the whole sentence."""
    assert diversity.diversity_scores({"1": caption}, None, TRAINING)["copied_from_training"] == copied
