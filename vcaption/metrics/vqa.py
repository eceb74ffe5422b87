"""The official VQA accuracy (`vqaEval.py`'s arithmetic exactly), a lenient variant, breakdowns, scorer CLI.

    python -m vcaption.evaluate --task vqa --results R.json --questions Q.json --annotations A.json \\
        [--answer-normalization {official,lenient}]

scores a results file in the official format (`[{"question_id": 1, "answer": "red"}, ...]`)
against a VQA v1 or v2 questions / annotations pair and prints overall, per-answer-type and
per-question-type accuracy (and `--output` writes them as JSON).

Source: Antol et al., "VQA: Visual Question Answering", ICCV 2015 §2, and the official evaluation
code, `PythonEvaluationTools/vqaEvaluation/vqaEval.py` of github.com/GT-Vision-Lab/VQA (master; the
rule of step 2 below is the one its authors confirm in GT-Vision-Lab/VQA issue #14: when the humans
agree, nothing is normalised, so answers to questions about written text are compared as typed).

Official accuracy of a result answer `r` for a question with the human answers h_1..h_n (n = 10),
`normalization="official"` (`accuracy`, `score`):
1. `r` and every h_i: newlines and tabs become spaces, surrounding whitespace is stripped.
2. Only if the h_i (after step 1) are not all identical (`len(set(gtAnswers)) > 1`): `r` and every
   h_i go through `processPunctuation` then `processDigitArticle` (below). When all humans gave
   the same string, `r` is compared to it as it is: "two" (or "Two", "2.", "the 2") scores 0
   against ten "2", and "2" scores 0 against ten raw "Two".
3. acc(r) = 1/n * sum_i min(#{j != i : h_j = r} / 3, 1): min(#humans who said r / 3, 1) averaged
   over the n leave-one-out subsets. With c humans saying r that is
   (c * min((c - 1) / 3, 1) + (n - c) * min(c / 3, 1)) / n: 0 humans -> 0, 1 -> 0.3, 2 -> 0.6,
   3 -> 0.9, 4 or more -> 1.
4. Overall accuracy is the mean over questions; per answer type ("yes/no", "number", "other") and
   per question type (the annotation's `question_type`) the mean over their questions.

`processPunctuation`:
* each character of `PUNCTUATION` (`; / [ ] " { } ( ) = + \\ _ - > < @ ` , ? !`) is *deleted* when
  it touches a space in the input (`"p "` or `" p"` occurs) or when the input holds a
  digit-comma-digit group (`COMMA_STRIP`, "1,000"), and *replaced by a space* otherwise
  ("black-white" -> "black white"); the tests look at the input, not the running output;
* then periods not followed by a digit are deleted ("yes." -> "yes", "3.5" stays), at most 32 of
  them: `vqaEval.py` calls `periodStrip.sub("", text, re.UNICODE)`, which passes `re.UNICODE` (32)
  as the *count*. (Its pattern's `(?!<=\\d)` is a look-*ahead* for "<=digit", which always holds
  before a period; the pattern is kept as written.)

`processDigitArticle`: lowercase, split on whitespace, number words "none", "zero" .. "ten" become
digits (`NUMBER_WORDS`), the articles "a", "an", "the" are dropped, apostrophe-less contractions get
their apostrophe back (`CONTRACTIONS`: "dont" -> "don't"), words are re-joined with single spaces.

`normalize_answer` is steps 1 and 2 unconditionally. It builds the answer vocabulary at ingest,
so a trained model predicts answers in normal form.

Where this module and `vqaEval.py` still differ (neither changes a number on the released
annotations):
* Accuracies are fractions in [0, 1]. The official code reports `round(100 * acc, 2)` per question
  and `round(100 * sum / count, 2)` per group; multiply by 100 and round to 2 decimals to compare
  (`format_table` prints exactly that).
* A question without human answers (a test-split question) scores 0 here; `vqaEval.py` divides by
  zero on it.
* The leave-one-out subsets leave out one answer *position*. `vqaEval.py` leaves out every answer
  dict equal to the left-out one, which is the same thing because the dicts differ in
  `answer_id`.

`normalization="lenient"` (`--answer-normalization lenient`) is a friendlier rule that is *not* the
official accuracy: step 2 always applies, whether or not the humans agree, so "two" scores 1 against
ten "2" and normaliser-equivalent raw answers ("Two", "the circle", "red.", as the built-in world
simulates) count as one. It is the rule of the soft training targets (`soft_scores`), because the
answer vocabulary is in normal form. On questions whose humans disagree the two rules give the same
number; they can differ only where all humans typed one identical string.
"""

from __future__ import annotations

import collections
import json
import os
import re
import sys
from typing import Iterable, Mapping, Sequence

from vcaption import cli

# --- vqaEval.py constants -----------------------------------------------------------------------
CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've",
    "hasnt": "hasn't", "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've",
    "hes": "he's", "howd": "how'd", "howll": "how'll", "hows": "how's", "Id've": "I'd've",
    "I'dve": "I'd've", "Im": "I'm", "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've",
    "it'dve": "it'd've", "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've",
    "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at",
    "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've",
    "she's": "she's", "shouldve": "should've", "shouldnt": "shouldn't", "shouldnt've": "shouldn't've",
    "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd", "somebodyd've": "somebody'd've",
    "somebody'dve": "somebody'd've", "somebodyll": "somebody'll", "somebodys": "somebody's",
    "someoned": "someone'd", "someoned've": "someone'd've", "someone'dve": "someone'd've",
    "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd",
    "somethingd've": "something'd've", "something'dve": "something'd've", "somethingll": "something'll",
    "thats": "that's", "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've",
    "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've",
    "werent": "weren't", "whatll": "what'll", "whatre": "what're", "whats": "what's",
    "whatve": "what've", "whens": "when's", "whered": "where'd", "wheres": "where's",
    "whereve": "where've", "whod": "who'd", "whod've": "who'd've", "who'dve": "who'd've",
    "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll", "whyre": "why're",
    "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll",
    "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've",
    "y'all'dve": "y'all'd've", "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've",
    "youll": "you'll", "youre": "you're", "youve": "you've",
}
NUMBER_WORDS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
                "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
ARTICLES = frozenset({"a", "an", "the"})
PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@",
               "`", ",", "?", "!")
# `vqaEval.py`'s pattern as written; see the module docstring.
PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
COMMA_STRIP = re.compile(r"(\d)(,)(\d)")
# `vqaEval.py` passes `re.UNICODE` where `re.sub` takes its count: at most 32 periods are deleted.
PERIODS_DELETED_AT_MOST = int(re.UNICODE)

ANSWER_TYPES = ("yes/no", "number", "other")
HUMANS_FOR_FULL_CREDIT = 3
OFFICIAL, LENIENT = "official", "lenient"
NORMALIZATIONS = (OFFICIAL, LENIENT)


def _strip_whitespace(text: str) -> str:
    """Step 1: applied to every answer, whatever the humans said."""
    return text.replace("\n", " ").replace("\t", " ").strip()


def _strip_punctuation(text: str) -> str:
    """`processPunctuation`: the tests look at the *input*, not the running output."""
    out = text
    delete = COMMA_STRIP.search(text) is not None
    for p in PUNCTUATION:
        if delete or p + " " in text or " " + p in text:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return PERIOD_STRIP.sub("", out, count=PERIODS_DELETED_AT_MOST)


def _digits_articles_contractions(text: str) -> str:
    """`processDigitArticle`."""
    words = [NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    words = [w for w in words if w not in ARTICLES]
    return " ".join(CONTRACTIONS.get(w, w) for w in words)


def normalize_answer(answer: str) -> str:
    """The official answer normalisation, unconditionally (module docstring, steps 1 and 2).

    Used for the answer vocabulary at ingest (`vcaption.ingest`), so a trained model predicts
    answers in normal form, and by the lenient accuracy. The official accuracy applies it only to
    questions whose humans disagree (`accuracy`).

    Example:
        >>> normalize_answer("Two.")
        '2'
        >>> normalize_answer("the black-and-white cat")
        'black and white cat'
    """
    return _digits_articles_contractions(_strip_punctuation(_strip_whitespace(answer)))


def _check_normalization(normalization: str) -> None:
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")


def accuracy(answer: str, human_answers: Sequence[str], normalization: str = OFFICIAL) -> float:
    """acc(a) = mean over the leave-one-out subsets of min(#humans in it who said a / 3, 1).

    Args:
        answer: the predicted answer.
        human_answers: the (10) human answers of the question.
        normalization: "official" (`vqaEval.py`: answers are normalised only when the humans
            disagree) or "lenient" (always normalised; not the official accuracy).

    Returns:
        The accuracy in [0, 1]; 0.0 for a question without human answers.

    Example:
        >>> accuracy("two", ["2"] * 10), accuracy("two", ["2"] * 10, normalization="lenient")
        (0.0, 1.0)
    """
    _check_normalization(normalization)
    if not human_answers:
        return 0.0
    humans = [_strip_whitespace(h) for h in human_answers]
    answer = _strip_whitespace(answer)
    if normalization == LENIENT or len(set(humans)) > 1:
        humans = [normalize_answer(h) for h in humans]
        answer = normalize_answer(answer)
    matches = sum(h == answer for h in humans)
    # Leaving out human i removes one match when h_i == answer.
    subsets = [min((matches - (h == answer)) / HUMANS_FOR_FULL_CREDIT, 1.0) for h in humans]
    return sum(subsets) / len(subsets)


def soft_scores(human_answers: Sequence[str]) -> dict[str, float]:
    """The lenient `accuracy` of each distinct normalised human answer: the soft training targets.

    Lenient, because the candidates are the answer vocabulary's normal forms: under the official
    rule ten humans typing "Two" would give the vocabulary's "2" no credit and the question no
    target.

    Example:
        >>> {a: round(s, 3) for a, s in soft_scores(["red"] * 8 + ["Blue", "blue."]).items()}
        {'red': 1.0, 'blue': 0.6}
    """
    return {a: accuracy(a, human_answers, LENIENT)
            for a in dict.fromkeys(normalize_answer(h) for h in human_answers)}


# --- scoring a results file ---------------------------------------------------------------------
def load_ground_truth(questions_path: str, annotations_path: str) -> dict[str, dict]:
    """{question_id: {"question", "answers", "answer_type", "question_type"}} of a VQA v1/v2 pair,
    read through `vcaption.datasets.vqa` (which checks the files); question ids are strings."""
    from vcaption.datasets import vqa as vqa_reader
    from vcaption.datasets.base import DeadLetter

    truth, problems = {}, []
    for item in vqa_reader.read(questions_path, images_dir=os.path.dirname(questions_path) or ".",
                                annotations_path=annotations_path):
        if isinstance(item, DeadLetter):
            problems.append(item.detail)
            continue
        truth[item.question_id] = {"question": item.question, "answers": list(item.answers),
                                   "answer_type": item.answer_type, "question_type": item.question_type}
    if problems:
        raise ValueError(f"{questions_path} / {annotations_path}: {len(problems)} unusable questions, "
                         f"first: {problems[0]}")
    return truth


def load_results(path: str) -> dict[str, str]:
    """{question_id: answer} of an official-format results file; raises ValueError naming the file
    on a malformed entry or a question answered twice."""
    with open(path, encoding="utf-8") as f:
        results = json.load(f)
    if not isinstance(results, list):
        raise ValueError(f"{path}: a VQA results file is a JSON list of {{question_id, answer}}")
    answers = {}
    for index, entry in enumerate(results):
        if (not isinstance(entry, dict) or "question_id" not in entry
                or not isinstance(entry.get("answer"), str)):
            raise ValueError(f"{path}: results[{index}] needs question_id and a string answer, got {entry!r}")
        question_id = str(entry["question_id"])
        if question_id in answers:
            raise ValueError(f"{path}: question_id {question_id} is answered twice")
        answers[question_id] = entry["answer"]
    return answers


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return sum(values) / len(values) if values else float("nan")


def score(predictions: Mapping[str, str], truth: Mapping[str, Mapping],
          normalization: str = OFFICIAL) -> dict:
    """VQA accuracy of `predictions` against every question of `truth`.

    Args:
        predictions: {question_id: answer}; must answer exactly the questions of `truth`.
        truth: {question_id: {"answers", "answer_type", "question_type"}} (`load_ground_truth`).
        normalization: "official" or "lenient" (`accuracy`).

    Returns:
        {"overall", "per_answer_type": {type: acc}, "per_question_type": {type: acc},
        "questions", "answer_normalization", "per_question": {question_id: acc}}.
    """
    _check_normalization(normalization)
    missing = sorted(set(truth) - set(predictions))
    extra = sorted(set(predictions) - set(truth))
    if missing or extra:
        raise ValueError(f"results must answer exactly the annotated questions: {len(missing)} missing "
                         f"(e.g. {missing[:3]}), {len(extra)} unknown (e.g. {extra[:3]})")
    per_question = {q: accuracy(predictions[q], t["answers"], normalization) for q, t in truth.items()}
    by_answer_type, by_question_type = collections.defaultdict(list), collections.defaultdict(list)
    for q, t in truth.items():
        by_answer_type[t.get("answer_type", "")].append(per_question[q])
        by_question_type[t.get("question_type", "")].append(per_question[q])
    return {
        "overall": _mean(per_question.values()),
        "per_answer_type": {k: _mean(v) for k, v in sorted(by_answer_type.items())},
        "per_question_type": {k: _mean(v) for k, v in sorted(by_question_type.items())},
        "questions": len(per_question),
        "answer_normalization": normalization,
        "per_question": per_question,
    }


def format_table(rows: Mapping[str, Mapping], title: str = "") -> str:
    """Fixed-width accuracy table (percent): one row per system, overall then each answer type."""
    types = sorted({t for r in rows.values() for t in r["per_answer_type"]},
                   key=lambda t: (ANSWER_TYPES.index(t) if t in ANSWER_TYPES else len(ANSWER_TYPES), t))
    header = f"{'system':<28}{'overall':>10}" + "".join(f"{t:>10}" for t in types)
    lines = ([title] if title else []) + [header, "-" * len(header)]
    for name, r in rows.items():
        cells = "".join(f"{100 * r['per_answer_type'][t]:>10.2f}" if t in r["per_answer_type"]
                        else f"{'-':>10}" for t in types)
        lines.append(f"{name:<28}{100 * r['overall']:>10.2f}{cells}")
    return "\n".join(lines)


def public(scores: Mapping) -> dict:
    """`score` without the per-question detail (for metrics.json)."""
    return {k: v for k, v in scores.items() if k != "per_question"}


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m vcaption.evaluate --task vqa --results R.json --questions Q.json --annotations A.json`."""
    parser = cli.make_parser("python -m vcaption.evaluate --task vqa", "VQA accuracy of a results file.")
    parser.add_argument("--results", required=True, help='[{"question_id": .., "answer": ..}] JSON')
    parser.add_argument("--questions", required=True, help="VQA v1/v2 *questions.json")
    parser.add_argument("--annotations", required=True, help="the matching *annotations.json")
    parser.add_argument("--answer-normalization", choices=NORMALIZATIONS, default=OFFICIAL,
                        help="official: vqaEval.py's rule, answers normalised only where the humans "
                             "disagree; lenient: always normalised (not the official accuracy)")
    parser.add_argument("--output", help="write the accuracies (and per-question ones) as JSON here")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    scores = score(load_results(args.results), load_ground_truth(args.questions, args.annotations),
                   args.answer_normalization)
    rule = "official" if args.answer_normalization == OFFICIAL else "lenient answer normalisation, not official"
    print(format_table({os.path.basename(args.results): scores},
                       f"VQA accuracy (%, {rule}), {scores['questions']} questions of {args.questions}"))
    print("per question type:")
    for name, value in scores["per_question_type"].items():
        print(f"  {name:<30}{100 * value:>8.2f}")
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            json.dump(scores, f, indent=1)
    return 0
