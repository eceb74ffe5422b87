"""Reader for VQA v1 and v2 questions with their human answers.

Format (Antol et al., "VQA: Visual Question Answering", ICCV 2015; Goyal et al., "Making the V in
VQA Matter", CVPR 2017; https://visualqa.org/download.html), a questions file such as
`v2_OpenEnded_mscoco_train2014_questions.json`:

```json
{"data_subtype": "train2014", "data_type": "mscoco", "task_type": "Open-Ended",
 "questions": [{"image_id": 458752, "question": "What is this photo taken looking through?",
                "question_id": 458752000}]}
```

(v1 `MultipleChoice_*` files add `"multiple_choices": [18 strings]`) and the annotations file of the
same subtype, `v2_mscoco_train2014_annotations.json`:

```json
{"data_subtype": "train2014",
 "annotations": [{"question_id": 458752000, "image_id": 458752, "question_type": "what is this",
                  "answer_type": "other", "multiple_choice_answer": "net",
                  "answers": [{"answer": "net", "answer_confidence": "maybe", "answer_id": 1}, ...]}]}
```

Test subtypes (`test2015`, `test-dev2015`) have no annotations: their questions come with no answers.
Question ids are unique over everything read, so a directory holding both OpenEnded and
MultipleChoice (v1) or test-dev and test files yields each question once (later ones DUPLICATE_ID).
"""

from __future__ import annotations

import os

import tensorflow as tf

from vcaption.datasets._common import (
    ImageDir, SeenIds, field_problem, media_problem, name_problem, text_problem)
from vcaption.datasets.base import (
    MALFORMED_ENTRY, UNKNOWN_SPLIT, DeadLetter, ReaderOutput, VQAExample, join_path, load_json, parent_dir,
    split_from_subtype)

_ID = (int, str)


def read(input_path: str, images_dir: str | None = None, *,
         annotations_path: str | None = None) -> ReaderOutput:
    """Yields a `VQAExample` per question, or dead letters.

    Args:
        input_path: a directory (every `*questions.json` in it is read, each paired with the
            `*annotations.json` whose name carries the same data subtype, e.g. `_train2014_`), or
            one questions file.
        images_dir: where the COCO images are: `<subtype>/COCO_<subtype>_<id:012d>.jpg`,
            `COCO_<subtype>_<id:012d>.jpg`, `<id:012d>.jpg` (2017 names) or `<subtype>/<id:012d>.jpg`.
            Defaults to `../images` (then `../Images/mscoco`) from the questions' directory.
        annotations_path: the annotations for a single questions file, instead of looking for one.

    Example:
        >>> for example in read("vqa/Questions", "coco"):
        ...     print(example.question, example.multiple_choice_answer)
    """
    if tf.io.gfile.isdir(input_path):
        directory = input_path.rstrip("/")
        questions_paths = sorted(tf.io.gfile.glob(join_path(directory, "*questions.json")))
        if not questions_paths:
            raise ValueError(f"{input_path}: no *questions.json file in this directory")
    else:
        directory, questions_paths = parent_dir(input_path), [input_path]
    if annotations_path and len(questions_paths) > 1:
        raise ValueError(f"annotations_path is ambiguous with {len(questions_paths)} questions files")
    candidates = sorted(tf.io.gfile.glob(join_path(directory, "*annotations.json")))
    root = parent_dir(directory)
    images = ImageDir(images_dir, [join_path(root, "images"), join_path(root, "Images/mscoco"), root])
    question_ids = SeenIds("question")
    for path in questions_paths:
        yield from _questions_file(path, annotations_path, candidates, images, question_ids)


def _questions_file(path: str, annotations_path: str | None, candidates: list[str], images: ImageDir,
                    question_ids: SeenIds) -> ReaderOutput:
    data = _load(path, "questions")
    subtype = data["data_subtype"]
    split = split_from_subtype(subtype)
    annotations_path = annotations_path or _paired(subtype, candidates)
    annotations, dead = ({}, []) if annotations_path is None else _annotations(annotations_path, subtype)
    yield from dead
    image_paths = {}  # image id -> path: several questions per image, one lookup
    for index, entry in enumerate(data["questions"]):
        where = f"{path}: questions[{index}]"
        problem = field_problem(entry, {"question_id": _ID, "image_id": _ID, "question": object})
        if problem:
            yield DeadLetter(where, "question", MALFORMED_ENTRY, f"{where}: {problem}", path)
            continue
        question_id, image_id = str(entry["question_id"]), str(entry["image_id"])
        annotation = annotations.pop(question_id, None)
        problem = (name_problem(question_id, "question", "question_id", where, path)
                   or name_problem(image_id, "question", "image_id", where, path)
                   or question_ids.duplicate(question_id, f"{where} (question_id {question_id})", path)
                   or _question_problem(entry, annotation, annotations_path, question_id, where, path)
                   or media_problem(_image_names(subtype, image_id), question_id, "question", where, path))
        if problem:
            yield problem
            continue
        if split is None:
            yield DeadLetter(question_id, "question", UNKNOWN_SPLIT,
                             f"{where}: no train/val/test in data_subtype {subtype!r}", path)
            continue
        if image_id not in image_paths:
            image_paths[image_id] = images.path(*_image_names(subtype, image_id))
        annotation = annotation or {}
        yield VQAExample(
            question_id, image_id, split, image_paths[image_id], entry["question"],
            answers=tuple(a["answer"] for a in annotation.get("answers", ())),
            multiple_choice_answer=annotation.get("multiple_choice_answer", ""),
            answer_type=annotation.get("answer_type", ""),
            question_type=annotation.get("question_type", ""),
            source=path)
    # Answers nobody asked for: an annotations file that does not match its questions file.
    for question_id in annotations:
        yield DeadLetter(question_id, "question", MALFORMED_ENTRY,
                         f"{annotations_path}: annotation for question_id {question_id} that {path} does "
                         "not list", annotations_path)


def _load(path: str, key: str) -> dict:
    data = load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get(key), list) \
            or not isinstance(data.get("data_subtype"), str):
        raise ValueError(f"{path}: not a VQA {key} file (needs 'data_subtype' and a '{key}' list)")
    return data


def _paired(subtype: str, candidates: list[str]) -> str | None:
    """The annotations file whose name carries the subtype as a `_`-separated part."""
    # Matching on the name avoids loading every (300 MB) annotations file to read its subtype;
    # _annotations() then checks that data_subtype agrees.
    for path in candidates:
        if f"_{subtype}_" in "_" + os.path.basename(path):
            return path
    return None


def _annotations(path: str, subtype: str) -> tuple[dict[str, dict], list[DeadLetter]]:
    """({question id: annotation}, dead letters for malformed or repeated annotations)."""
    data = _load(path, "annotations")
    if data["data_subtype"] != subtype:
        raise ValueError(f"{path}: data_subtype {data['data_subtype']!r} does not match the questions' "
                         f"{subtype!r}")
    by_question, dead, seen = {}, [], SeenIds("question")
    for index, entry in enumerate(data["annotations"]):
        where = f"{path}: annotations[{index}]"
        problem = field_problem(entry, {"question_id": _ID, "image_id": _ID, "answers": list})
        if problem:
            dead.append(DeadLetter(where, "question", MALFORMED_ENTRY, f"{where}: {problem}", path))
            continue
        question_id = str(entry["question_id"])
        duplicate = seen.duplicate(question_id, f"{where}: annotation", path)
        if duplicate:
            dead.append(duplicate)
        else:
            by_question[question_id] = entry
    return by_question, dead


def _question_problem(entry: dict, annotation: dict | None, annotations_path: str | None,
                      question_id: str, where: str, source: str) -> DeadLetter | None:
    """A dead letter for a question whose text or answers cannot be used, else None."""
    if annotations_path and annotation is None:
        return DeadLetter(question_id, "question", MALFORMED_ENTRY,
                          f"{where}: no annotation in {annotations_path}", source)
    texts = [("question", entry["question"])]
    if annotation is not None:
        if str(annotation["image_id"]) != str(entry["image_id"]):
            return DeadLetter(question_id, "question", MALFORMED_ENTRY,
                              f"{where}: annotation is for image {annotation['image_id']}, "
                              f"question for image {entry['image_id']}", source)
        texts += [(f"answers[{k}]", a.get("answer") if isinstance(a, dict) else a)
                  for k, a in enumerate(annotation["answers"])]
        texts += [(key, annotation[key]) for key in ("multiple_choice_answer", "answer_type", "question_type")
                  if key in annotation]
    for what, text in texts:
        problem = text_problem(text, what)
        if problem:
            return DeadLetter(question_id, "question", problem[0], f"{where}: {problem[1]}", source)
    return None


def _image_names(subtype: str, image_id: str) -> tuple[str, ...]:
    """Candidate image paths: VQA/COCO-2014 names first, then COCO-2017 names."""
    number = f"{int(image_id):012d}" if image_id.isdigit() else image_id
    return (f"{subtype}/COCO_{subtype}_{number}.jpg", f"COCO_{subtype}_{number}.jpg", f"{number}.jpg",
            f"{subtype}/{number}.jpg")
