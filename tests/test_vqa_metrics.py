"""Official VQA accuracy: every normalisation rule of vqaEval.py, when it applies (only where the
humans disagree), and the leave-one-out averaging, on hand-written cases whose expected accuracies
are worked out here from the official code's rules; the lenient rule beside it; the scorer CLI on
VQA v1 and v2 JSON pairs."""

from __future__ import annotations

import json

import pytest

from vcaption import evaluate
from vcaption.metrics import vqa


# --- normalisation: one test per rule of the module docstring ------------------------------------

@pytest.mark.parametrize("raw, expected", [
    ("\tred\n", "red"),                 # 1. tabs/newlines -> spaces, stripped
    ("light\nblue", "light blue"),
    ("  yes  ", "yes"),
])
def test_whitespace(raw, expected):
    assert vqa.normalize_answer(raw) == expected


@pytest.mark.parametrize("raw, expected", [
    ("black-white", "black white"),     # 2. punctuation not touching a space -> a space
    ("yes?", "yes"),                    #    (the trailing space then disappears in step 4)
    ("t/shirt", "t shirt"),
    ('"stop"', "stop"),
    ("hi - there", "hi there"),         #    touching a space -> deleted: "hi  there"
    ("wow !", "wow"),
    ("(a) dog", "dog"),                 #    "(" -> a space, ")" touches one: deleted; "a" is an article
    ("1,000", "1000"),                  #    a digit-comma-digit group deletes every punctuation mark
    ("1,000-2", "10002"),
    ("red,blue", "red blue"),           #    a comma without digits around it is a separator
    ("it's", "it's"),                   #    the apostrophe is not in the list
    ("50%", "50%"),                     #    neither is %
])
def test_punctuation(raw, expected):
    assert vqa.normalize_answer(raw) == expected


@pytest.mark.parametrize("raw, expected", [
    ("yes.", "yes"),                    # 3. a period not followed by a digit is deleted
    ("u.s.a.", "usa"),
    ("3.5", "3.5"),                     #    a decimal point stays
    (".5", ".5"),
    ("5.", "5"),
])
def test_periods(raw, expected):
    assert vqa.normalize_answer(raw) == expected


@pytest.mark.parametrize("raw, expected", [
    ("RED", "red"),                     # 4. lowercase
    ("Two", "2"),                       #    number words -> digits
    ("none", "0"), ("zero", "0"), ("ten", "10"),
    ("eleven", "eleven"),               #    only none/zero..ten
    ("two dogs", "2 dogs"),
    ("a circle", "circle"),             #    articles dropped
    ("An apple", "apple"),
    ("the the end", "end"),
    ("theater", "theater"),             #    whole words only
    ("dont", "don't"),                  #    contractions get their apostrophe back
    ("Isnt it", "isn't it"),
    ("don't", "don't"),
    ("thats the one", "that's 1"),      #    all of step 4 together
])
def test_digits_articles_contractions(raw, expected):
    assert vqa.normalize_answer(raw) == expected


def test_at_most_32_periods_are_deleted():
    # vqaEval.py: periodStrip.sub("", text, re.UNICODE) passes re.UNICODE (32) as the count.
    assert vqa.normalize_answer("." * 33) == "."
    assert vqa.normalize_answer("a" + ".b" * 33) == "a" + "b" * 32 + ".b"


def test_normalisation_is_idempotent_on_the_rules_above():
    for raw in ["black-white", "Two.", "the dont", "1,000", "u.s.a.", "hi - there"]:
        once = vqa.normalize_answer(raw)
        assert vqa.normalize_answer(once) == once


# --- accuracy: min(#humans / 3, 1) averaged over the 10 leave-one-out subsets ------------------------

def test_accuracy_by_number_of_matching_humans():
    others = ["x"] * 10
    # c humans agree; leaving out one of them leaves c - 1, leaving out another leaves c:
    # acc = (c * min((c - 1) / 3, 1) + (10 - c) * min(c / 3, 1)) / 10
    assert vqa.accuracy("2", others) == 0.0
    assert vqa.accuracy("2", ["2"] + others[1:]) == pytest.approx((1 * 0 + 9 * (1 / 3)) / 10)  # 0.3
    assert vqa.accuracy("2", ["2"] * 2 + others[2:]) == pytest.approx((2 * (1 / 3) + 8 * (2 / 3)) / 10)  # 0.6
    assert vqa.accuracy("2", ["2"] * 3 + others[3:]) == pytest.approx((3 * (2 / 3) + 7 * 1) / 10)  # 0.9
    assert vqa.accuracy("2", ["2"] * 4 + others[4:]) == pytest.approx(1.0)
    assert vqa.accuracy("2", ["2"] * 10) == 1.0


def test_accuracy_normalises_both_sides_when_the_humans_disagree():
    humans = ["Two", "2.", "two", "3", "3", "3", "three", "4", "4", "4"]
    # "2" matches 3 humans after normalisation -> 0.9; "3" matches 4 -> 1.0; "4" matches 3 -> 0.9
    for normalization in ("official", "lenient"):
        assert vqa.accuracy("two", humans, normalization) == pytest.approx(0.9)
        assert vqa.accuracy("the 3", humans, normalization) == pytest.approx(1.0)
        assert vqa.accuracy("4!", humans, normalization) == pytest.approx(0.9)
        assert vqa.accuracy("5", humans, normalization) == 0.0


# Where the two rules differ: all ten humans typed one string, so vqaEval.py normalises nothing
# (only newlines, tabs and surrounding spaces go) and compares the result answer as it is.
@pytest.mark.parametrize("answer, humans, official, lenient", [
    ("two", ["2"] * 10, 0.0, 1.0),              # number word against unanimous digits
    ("2", ["Two"] * 10, 0.0, 1.0),              # raw unanimous humans are not normalised either
    ("2", ["2"] * 10, 1.0, 1.0),
    (" 2\n", ["2"] * 10, 1.0, 1.0),             # whitespace is always stripped
    ("a circle", ["circle"] * 10, 0.0, 1.0),    # articles
    ("the circle", ["circle"] * 10, 0.0, 1.0),
    ("yes.", ["yes"] * 10, 0.0, 1.0),           # punctuation and periods
    ("yes!", ["yes"] * 10, 0.0, 1.0),
    ("Yes", ["yes"] * 10, 0.0, 1.0),            # not even lowercased
    ("dont", ["don't"] * 10, 0.0, 1.0),         # contractions
    ("Red", ["red"] * 9 + ["red "], 0.0, 1.0),  # "red " is stripped first: the humans agree
    ("Red", ["red"] * 9 + ["Red."], 1.0, 1.0),  # "Red." differs: everything is normalised
    ("yes!", ["yes"] * 9 + ["no"], 1.0, 1.0),   # 9 humans say "yes" -> 1.0
    ("no.", ["yes"] * 9 + ["no"], 0.3, 0.3),    # 1 human -> (1 * 0 + 9 * 1/3) / 10
    ("a circle", ["circle"] * 8 + ["square"] * 2, 1.0, 1.0),
    ("two squares", ["2 squares"] * 2 + ["1"] * 8, 0.6, 0.6),  # 2 humans -> (2 * 1/3 + 8 * 2/3) / 10
])
def test_official_accuracy_normalises_only_when_the_humans_disagree(answer, humans, official, lenient):
    assert vqa.accuracy(answer, humans) == pytest.approx(official)
    assert vqa.accuracy(answer, humans, "official") == pytest.approx(official)
    assert vqa.accuracy(answer, humans, "lenient") == pytest.approx(lenient)


def test_accuracy_refuses_an_unknown_normalization():
    with pytest.raises(ValueError, match="normalization must be one of"):
        vqa.accuracy("2", ["2"] * 10, "always")


def test_accuracy_with_fewer_humans_and_none():
    # 3 humans all saying "yes": each leave-one-out subset has 2 -> 2/3
    assert vqa.accuracy("yes", ["yes"] * 3) == pytest.approx(2 / 3)
    assert vqa.accuracy("yes", []) == 0.0


def test_soft_scores_are_the_accuracy_of_each_distinct_answer():
    humans = ["red"] * 7 + ["Red.", "blue", "the blue"]
    assert vqa.soft_scores(humans) == pytest.approx({"red": 1.0, "blue": 0.6})


# --- scoring a results file ---------------------------------------------------------------------------

TRUTH = {
    "1": {"answers": ["yes"] * 10, "answer_type": "yes/no", "question_type": "is there a"},
    "2": {"answers": ["2"] * 3 + ["3"] * 7, "answer_type": "number", "question_type": "how many"},
    "3": {"answers": ["red"] * 10, "answer_type": "other", "question_type": "what color is the"},
    "4": {"answers": ["no"] * 10, "answer_type": "yes/no", "question_type": "is the"},
}


def test_score_overall_and_breakdowns():
    predictions = {"1": "Yes", "2": "two", "3": "blue", "4": "no"}
    scores = vqa.score(predictions, TRUTH)
    # per question: "Yes" against ten "yes" is compared as typed -> 0.0; "two" -> "2" (the humans
    # disagree) said by 3 -> 0.9; 0.0; 1.0
    assert scores["per_question"] == pytest.approx({"1": 0.0, "2": 0.9, "3": 0.0, "4": 1.0})
    assert scores["overall"] == pytest.approx(1.9 / 4)
    assert scores["per_answer_type"] == pytest.approx({"number": 0.9, "other": 0.0, "yes/no": 0.5})
    assert scores["per_question_type"] == pytest.approx(
        {"how many": 0.9, "is the": 1.0, "is there a": 0.0, "what color is the": 0.0})
    assert scores["answer_normalization"] == "official"
    lenient = vqa.score(predictions, TRUTH, normalization="lenient")
    assert lenient["per_question"] == pytest.approx({"1": 1.0, "2": 0.9, "3": 0.0, "4": 1.0})
    assert lenient["overall"] == pytest.approx(2.9 / 4) and lenient["answer_normalization"] == "lenient"


def test_score_requires_every_question_answered_once(tmp_path):
    with pytest.raises(ValueError, match="1 missing"):
        vqa.score({"1": "yes", "2": "2", "3": "red"}, TRUTH)
    path = tmp_path / "r.json"
    path.write_text(json.dumps([{"question_id": 1, "answer": "yes"}, {"question_id": 1, "answer": "no"}]))
    with pytest.raises(ValueError, match="answered twice"):
        vqa.load_results(str(path))
    path.write_text(json.dumps([{"question_id": 1}]))
    with pytest.raises(ValueError, match=r"r\.json: results\[0\]"):
        vqa.load_results(str(path))


def _human(answers):
    return [{"answer": a, "answer_confidence": "yes", "answer_id": i + 1} for i, a in enumerate(answers)]


def _annotations(subtype):
    return {"data_subtype": subtype, "annotations": [
        {"question_id": 10, "image_id": 1, "question_type": "how many", "answer_type": "number",
         "multiple_choice_answer": "2", "answers": _human(["2"] * 2 + ["two"] + ["3"] * 7)},
        {"question_id": 11, "image_id": 1, "question_type": "what color is the", "answer_type": "other",
         "multiple_choice_answer": "red", "answers": _human(["red"] * 10)}]}


def _questions(subtype, multiple_choice=False):
    questions = [{"question_id": 10, "image_id": 1, "question": "How many dogs?"},
                 {"question_id": 11, "image_id": 1, "question": "What color is the car?"}]
    if multiple_choice:  # v1 MultipleChoice files list 18 candidate answers per question
        for q in questions:
            q["multiple_choices"] = ["red", "2", "3"] + [str(k) for k in range(4, 19)]
    return {"data_subtype": subtype, "task_type": "Multiple-Choice" if multiple_choice else "Open-Ended",
            "data_type": "mscoco", "questions": questions}


@pytest.mark.parametrize("version, questions_name, annotations_name, multiple_choice", [
    ("v1", "MultipleChoice_mscoco_val2014_questions.json", "mscoco_val2014_annotations.json", True),
    ("v1", "OpenEnded_mscoco_val2014_questions.json", "mscoco_val2014_annotations.json", False),
    ("v2", "v2_OpenEnded_mscoco_val2014_questions.json", "v2_mscoco_val2014_annotations.json", False),
])
def test_cli_scores_v1_and_v2_pairs(tmp_path, capsys, version, questions_name, annotations_name,
                                    multiple_choice):
    questions = tmp_path / questions_name
    annotations = tmp_path / annotations_name
    questions.write_text(json.dumps(_questions("val2014", multiple_choice)))
    annotations.write_text(json.dumps(_annotations("val2014")))
    results = tmp_path / "results.json"
    results.write_text(json.dumps([{"question_id": 10, "answer": "2"},
                                   {"question_id": 11, "answer": "blue"}]))
    out = tmp_path / "scores.json"
    assert evaluate.main(["--task", "vqa", "--results", str(results), "--questions", str(questions),
                          "--annotations", str(annotations), "--output", str(out)]) == 0
    scores = json.loads(out.read_text())
    # "2" is given by 3 humans ("2", "2", "two") -> 0.9; "blue" by none -> 0
    assert scores["per_question"] == pytest.approx({"10": 0.9, "11": 0.0})
    assert scores["overall"] == pytest.approx(0.45)
    assert scores["per_answer_type"] == pytest.approx({"number": 0.9, "other": 0.0})
    printed = capsys.readouterr().out
    assert "45.00" in printed and "90.00" in printed and "how many" in printed


def test_cli_official_by_default_lenient_on_request(tmp_path, capsys):
    questions = tmp_path / "v2_OpenEnded_mscoco_val2014_questions.json"
    annotations = tmp_path / "v2_mscoco_val2014_annotations.json"
    questions.write_text(json.dumps(_questions("val2014")))
    annotations.write_text(json.dumps(_annotations("val2014")))
    results = tmp_path / "results.json"
    # Question 10: the humans disagree, "two" -> "2" said by 3 -> 0.9 under both rules.
    # Question 11: ten humans said "red"; "Red." is compared as typed officially -> 0.0.
    results.write_text(json.dumps([{"question_id": 10, "answer": "two"},
                                   {"question_id": 11, "answer": "Red."}]))
    common = ["--task", "vqa", "--results", str(results), "--questions", str(questions),
              "--annotations", str(annotations)]
    official, lenient = tmp_path / "official.json", tmp_path / "lenient.json"
    assert evaluate.main(common + ["--output", str(official)]) == 0
    assert "official" in capsys.readouterr().out
    assert evaluate.main(common + ["--answer-normalization", "lenient", "--output", str(lenient)]) == 0
    assert "not official" in capsys.readouterr().out
    official, lenient = json.loads(official.read_text()), json.loads(lenient.read_text())
    assert official["per_question"] == pytest.approx({"10": 0.9, "11": 0.0})
    assert official["overall"] == pytest.approx(0.45) and official["answer_normalization"] == "official"
    assert lenient["per_question"] == pytest.approx({"10": 0.9, "11": 1.0})
    assert lenient["overall"] == pytest.approx(0.95) and lenient["answer_normalization"] == "lenient"


def test_cli_refuses_a_mismatched_pair(tmp_path):
    questions = tmp_path / "v2_OpenEnded_mscoco_val2014_questions.json"
    annotations = tmp_path / "v2_mscoco_val2014_annotations.json"
    questions.write_text(json.dumps(_questions("val2014")))
    bad = _annotations("val2014")
    bad["annotations"][1]["image_id"] = 2
    annotations.write_text(json.dumps(bad))
    results = tmp_path / "results.json"
    results.write_text(json.dumps([{"question_id": 10, "answer": "2"}]))
    with pytest.raises(ValueError, match="1 unusable questions.*annotation is for image 2"):
        vqa.main(["--results", str(results), "--questions", str(questions),
                  "--annotations", str(annotations)])


def test_format_table():
    scores = vqa.score({"1": "yes", "2": "3", "3": "red", "4": "yes"}, TRUTH)
    table = vqa.format_table({"model": scores}, "title")
    lines = table.splitlines()
    assert lines[0] == "title" and lines[1].split() == ["system", "overall", "yes/no", "number", "other"]
    assert lines[3].split() == ["model", "75.00", "50.00", "100.00", "100.00"]
