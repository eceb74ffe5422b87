"""Scene-grounded caption correctness on the built-in shapes world: is what a caption says true?

CIDEr-D rewards n-grams shared with the references, so "a large blue square" scores almost as well
as "a large red square" against "a large red square in the top left". Here each caption is read
back with the world's own grammar (`vcaption.datasets.shapes`: its colour, size, shape, number and
relation words, synonyms and plurals included) and checked against the scene it describes
(`scenes.json`):

* **object precision / recall**: the shapes a caption names (per caption, as a set of classes)
  that are in the scene, over those named / over those in the scene.
* **CHAIR_i / CHAIR_s** (Rohrbach et al., "Object Hallucination in Image Captioning", EMNLP 2018):
  named shape classes absent from the scene over all named ones; captions naming at least one
  absent shape over all captions.
* **attribute binding**: noun phrases that name a colour and a shape (and maybe a size) for which
  one object of the scene has all of them together ("a red circle" when the scene has a red square
  and a blue circle is wrong, though each word is in the scene).
* **counts**: claims such as "two shapes", "three red circles", "a single ...", "the only shape"
  that equal the scene's count.
* **relations**: "X (is) above / below / (to the) left of / (to the) right of Y" for which some
  object fitting X stands in that relation to another fitting Y (rows for above/below, columns for
  left/right, as `shapes.relations`).
* **held-out-pair recall** (novel-composition split): of the held-out (colour, shape) pairs in an
  image, the share its caption names with that colour bound to that shape.

Every rate is a ratio of totals over the captions (micro-average) and None when its denominator is
zero (no caption made such a claim), so that "no claims" is never reported as perfect.

Example:
    >>> scenes = load_scenes("data/shapes18k/world/scenes.json")
    >>> grounding_scores({"7": "a large red circle above a blue square"}, scenes)["chair_s"]
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Mapping, Sequence

from vcaption.datasets import shapes

# Word -> attribute value, from the generator's tables (synonyms and plurals included).
COLOUR_WORDS = {c: c for c in shapes.COLOURS}
SIZE_WORDS = {w: size for size, words in shapes.SIZE_SYNONYMS.items() for w in words}
SHAPE_WORDS = {s: s for s in shapes.SHAPES} | {w: s for s, words in shapes.SHAPE_SYNONYMS.items()
                                               for w in words}
PLURAL_SHAPE_WORDS = {(w + "es" if w.endswith(("x", "s")) else w + "s"): s for w, s in SHAPE_WORDS.items()}
GENERIC_WORDS = {"shape", "shapes", "object", "objects", "thing", "things"}
NUMBER_WORDS = {w: n for n, w in enumerate(shapes.NUMBER_WORDS)} | {"single": 1}
_RELATIONS = sorted(((tuple(p.split()), r) for p, r in shapes.RELATION_PHRASES.items()),
                    key=lambda item: -len(item[0]))  # longest phrase first: "to the left of"
_ARTICLES = {"a", "an", "the"}
_COPULAS = {"is", "are"}


@dataclasses.dataclass(frozen=True)
class Mention:
    """A noun phrase of a caption: "[number] [size] [colour] shape", or a generic "two shapes".

    Args:
        start: index of its first token.
        end: index of its noun (the last token).
        shape: the shape class, or None for a generic noun ("shape", "object").
        colour: the colour named, or None.
        size: "small" / "large", or None.
        number: the count stated before it ("two", "a single"), or None.
    """

    start: int
    end: int
    shape: str | None
    colour: str | None = None
    size: str | None = None
    number: int | None = None

    def fits(self, obj: Mapping) -> bool:
        """Whether a scene object has every attribute this phrase names."""
        return all(value is None or obj[key] == value
                   for key, value in (("shape", self.shape), ("colour", self.colour), ("size", self.size)))


@dataclasses.dataclass(frozen=True)
class ParsedCaption:
    """What a caption claims: its noun phrases, counts and relations (`parse_caption`)."""

    mentions: tuple[Mention, ...]
    # (phrase, count): "two shapes" -> (generic mention, 2); "the only shape" -> (generic, 1).
    counts: tuple[tuple[Mention, int], ...]
    relations: tuple[tuple[Mention, str, Mention], ...]  # (X, "above" | "left of" | ..., Y)

    @property
    def shapes(self) -> set[str]:
        return {m.shape for m in self.mentions if m.shape is not None}


def tokens_of(caption: str) -> list[str]:
    """Lower-case alphanumeric words (the normal form of `vcaption.text`, without TensorFlow)."""
    return re.sub(r"[^0-9a-z]+", " ", caption.lower()).split()


def _noun_phrase(tokens: Sequence[str], end: int) -> Mention | None:
    """The phrase whose noun is tokens[end], with the modifiers right before it."""
    noun = tokens[end]
    if noun in SHAPE_WORDS or noun in PLURAL_SHAPE_WORDS:
        shape = SHAPE_WORDS.get(noun) or PLURAL_SHAPE_WORDS[noun]
    elif noun in GENERIC_WORDS:
        shape = None
    else:
        return None
    colour = size = number = None
    start = end
    while start > 0:
        word = tokens[start - 1]
        if word in COLOUR_WORDS and colour is None:
            colour = COLOUR_WORDS[word]
        elif word in SIZE_WORDS and size is None:
            size = SIZE_WORDS[word]
        elif word in NUMBER_WORDS and number is None:
            number = NUMBER_WORDS[word]
        else:
            break
        start -= 1
    if start > 0 and tokens[start - 1] == "only":  # "the only shape (is ...)"
        number = 1
    return Mention(start, end, shape, colour, size, number)


def _relation_after(tokens: Sequence[str], position: int) -> tuple[str, int] | None:
    """(relation, index after its phrase) when a relation phrase starts at `position` (after an
    optional "is")."""
    if position < len(tokens) and tokens[position] in _COPULAS:
        position += 1
    for phrase, relation in _RELATIONS:
        if tuple(tokens[position:position + len(phrase)]) == phrase:
            return relation, position + len(phrase)
    return None


def parse_caption(caption: str) -> ParsedCaption:
    """Reads a caption back into mentions, count claims and relation claims.

    Example:
        >>> parsed = parse_caption("two shapes: a big red ball is above a small blue box")
        >>> [(m.size, m.colour, m.shape) for m in parsed.mentions]
        [(None, None, None), ('large', 'red', 'circle'), ('small', 'blue', 'square')]
        >>> [n for _, n in parsed.counts], [r for _, r, _ in parsed.relations]
        ([2], ['above'])
    """
    tokens = tokens_of(caption)
    phrases = [m for m in (_noun_phrase(tokens, k) for k in range(len(tokens))) if m is not None]
    starting_at = {m.start: m for m in phrases}
    relations = []
    for m in phrases:
        found = _relation_after(tokens, m.end + 1)
        if found is None:
            continue
        relation, position = found
        while position < len(tokens) and tokens[position] in _ARTICLES:
            position += 1
        other = starting_at.get(position)
        if other is not None and m.shape is not None and other.shape is not None:
            relations.append((m, relation, other))
    counts = tuple((m, m.number) for m in phrases if m.number is not None)
    named = tuple(m for m in phrases if m.shape is not None)
    return ParsedCaption(named, counts, tuple(relations))


def _count_is_right(mention: Mention, number: int, objects: Sequence[Mapping]) -> bool:
    if mention.shape is None and mention.colour is None and mention.size is None:
        return len(objects) == number  # "two shapes": all of them
    return sum(mention.fits(o) for o in objects) == number


def _relation_holds(first: Mention, relation: str, second: Mention, objects: Sequence[Mapping]) -> bool:
    return any(a is not b and first.fits(a) and second.fits(b)
               and shapes.cell_relations(a["row"], a["col"], b["row"], b["col"])[relation]
               for a in objects for b in objects)


def _rate(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def grounding_scores(captions: Mapping[str, str], scenes: Mapping[str, Mapping],
                     held_out_pairs: Sequence[Sequence[str]] = ()) -> dict:
    """Scores generated captions against their scenes (rates in [0, 1], None without claims).

    Args:
        captions: image id -> one generated caption.
        scenes: image id -> scene (`load_scenes`): {"objects": [{"shape", "colour", "size", "row",
            "col"}, ...]}. Every caption's image must be there.
        held_out_pairs: (colour, shape) pairs held out of training; when given, also
            `held_out_pair_recall` over the images that contain one.

    Returns:
        {"object_precision", "object_recall", "chair_i", "chair_s", "binding_accuracy",
        "count_accuracy", "relation_accuracy", "held_out_pair_recall" (with held_out_pairs),
        "captions", and the denominators "mentions", "bindings", "count_claims",
        "relation_claims", "held_out_pairs_present"}.
    """
    _require_scenes(captions, scenes)
    totals = dict.fromkeys(("named", "named_present", "in_scene", "hallucinating_captions",
                            "bindings", "bindings_right", "counts", "counts_right", "relations",
                            "relations_right", "held_out", "held_out_named"), 0)
    held_out = {tuple(p) for p in held_out_pairs}
    for image_id, caption in captions.items():
        objects = scenes[str(image_id)]["objects"]
        parsed = parse_caption(caption)
        in_scene = {o["shape"] for o in objects}
        named = parsed.shapes
        totals["named"] += len(named)
        totals["named_present"] += len(named & in_scene)
        totals["in_scene"] += len(in_scene)
        totals["hallucinating_captions"] += bool(named - in_scene)
        bound = [m for m in parsed.mentions if m.colour is not None]
        totals["bindings"] += len(bound)
        totals["bindings_right"] += sum(any(m.fits(o) for o in objects) for m in bound)
        totals["counts"] += len(parsed.counts)
        totals["counts_right"] += sum(_count_is_right(m, n, objects) for m, n in parsed.counts)
        totals["relations"] += len(parsed.relations)
        totals["relations_right"] += sum(_relation_holds(a, r, b, objects) for a, r, b in parsed.relations)
        present = {(o["colour"], o["shape"]) for o in objects} & held_out
        said = {(m.colour, m.shape) for m in bound}
        totals["held_out"] += len(present)
        totals["held_out_named"] += len(present & said)
    scores = {
        "object_precision": _rate(totals["named_present"], totals["named"]),
        "object_recall": _rate(totals["named_present"], totals["in_scene"]),
        "chair_i": _rate(totals["named"] - totals["named_present"], totals["named"]),
        "chair_s": _rate(totals["hallucinating_captions"], len(captions)),
        "binding_accuracy": _rate(totals["bindings_right"], totals["bindings"]),
        "count_accuracy": _rate(totals["counts_right"], totals["counts"]),
        "relation_accuracy": _rate(totals["relations_right"], totals["relations"]),
        "captions": len(captions), "mentions": totals["named"], "bindings": totals["bindings"],
        "count_claims": totals["counts"], "relation_claims": totals["relations"],
    }
    if held_out:
        scores["held_out_pair_recall"] = _rate(totals["held_out_named"], totals["held_out"])
        scores["held_out_pairs_present"] = totals["held_out"]
    return scores


def grounding_by_scene_size(captions: Mapping[str, str], scenes: Mapping[str, Mapping],
                            held_out_pairs: Sequence[Sequence[str]] = ()) -> dict[str, dict]:
    """`grounding_scores` of the captions grouped by how many objects their scene holds:
    {"1": scores of the one-object scenes, "2": ..., ...}, smallest first.

    One split-wide rate hides where a captioner fails: on the built-in world an LSTM captioner
    names most held-out pairs of one-object scenes and almost none of four-object ones, where it
    tends to name two of the four objects (README, "Evaluation").
    """
    _require_scenes(captions, scenes)
    groups: dict[int, dict] = {}
    for image_id, caption in captions.items():
        groups.setdefault(len(scenes[str(image_id)]["objects"]), {})[image_id] = caption
    return {str(n): grounding_scores(groups[n], scenes, held_out_pairs) for n in sorted(groups)}


def _require_scenes(captions: Mapping[str, str], scenes: Mapping[str, Mapping]) -> None:
    missing = [k for k in captions if str(k) not in scenes]
    if missing:
        raise KeyError(f"grounding: {len(missing)} captioned images have no scene, e.g. {missing[:3]}")


def load_scenes(path: str) -> tuple[dict[str, dict], list[list[str]]]:
    """scenes.json (local or gs://) -> ({image id (string, as in the records): scene with its
    "image_size"}, held-out (colour, shape) pairs or [])."""
    import tensorflow as tf  # late: gfile for gs:// paths; the metrics themselves need no TF

    with tf.io.gfile.GFile(path) as f:
        data = json.load(f)
    scenes = {str(s["id"]): {**s, "image_size": data["image_size"]} for s in data["images"]}
    return scenes, data.get("held_out", {}).get("colour_shapes", [])
