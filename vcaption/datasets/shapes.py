"""The shapes world: a built-in dataset generator, written in the public formats.

vcaption has no internet access in tests and CI, so it draws its own data. The world is small
enough to learn in minutes on a CPU and rich enough to exercise every task of the package:

* **Images.** A dark canvas (`BACKGROUND`) cut into a 3x3 grid of cells. One to four filled
  objects, each alone in its cell (so objects never overlap), jittered a little inside it. An
  object has a shape (circle, square, triangle, diamond), a colour (red, green, blue, yellow,
  purple, orange) and a size (small ~40% or large ~85% of the cell). Its region is its tight
  pixel bounding box, and its cell gives its position ("in the top left", "at the bottom").
* **Captions.** Five true, human-like sentences per image (at most 16 tokens each). They share
  a strong core -- the objects as "size colour shape position" in reading order -- so a
  captioner can reach high BLEU, and vary around it with synonyms ("big", "ball"), prefixes
  ("there is"), spatial relations ("above", "left of") and counts ("two shapes").
* **Questions.** Three to five VQA questions per image (colour, shape, count, existence,
  relation) with ten simulated human answers each, ~90% of them correct.
* **Videos.** One object that moves left / right / up /
  down throughout, moves left or right then stops or comes back, grows or shrinks, often beside a
  distractor that drifts slowly its own way, under camera noise; ten activity classes,
  a semantic tuple (colour, shape, verb, place) and five descriptions per clip.

Everything is written in the formats of the real datasets (Karpathy split JSON, COCO, Flickr8k,
Visual Genome, VQA v2, MSR-VTT) so that the shapes world goes through the same readers as real
data (DESIGN rule 7). `scenes.json` is the only private file: the ground truth (boxes, cells,
activities) that later tasks use to score alignments.

Generation is deterministic: every image and video draws from its own random stream, seeded by
`(seed, kind, index)`, so the same seed gives byte-identical files and image 7 is the same image
whether 30 or 2000 images are generated.

Usage:
    python -m vcaption.datasets.shapes --output /tmp/shapes --num-images 2000 --num-videos 200
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
from typing import Sequence

import cv2
import numpy as np

BACKGROUND = (30, 30, 30)
SHAPES = ("circle", "square", "triangle", "diamond")
# The Novel Object Captioner's world (`generate(noc=True)`) has twice the object classes, so that
# some can be held out of every paired caption and still be learned from unpaired data.
NOC_SHAPES = SHAPES + ("star", "hexagon", "cross", "arrow")
# Held out of every paired train/val image and caption of a NOC world (Venugopalan et al. CVPR
# 2017, as in the lecture's "Diversifying captions": DCC/NOC hold out eight COCO objects). Two
# of the new classes, so that each still has seen neighbours of its kind in the captions.
NOC_HELD_OUT = ("star", "hexagon")
COLOURS = {  # RGB, far apart from each other and from the background even after JPEG.
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (50, 90, 235),
    "yellow": (235, 220, 40),
    "purple": (150, 60, 210),
    "orange": (245, 140, 30),
}
SIZES = {"small": 0.4, "large": 0.85}  # object extent as a fraction of the cell side
CELL_NAMES = (
    ("top left", "top", "top right"),
    ("left", "center", "right"),
    ("bottom left", "bottom", "bottom right"),
)
POSITION_PHRASES = {
    "top left": "in the top left", "top": "at the top", "top right": "in the top right",
    "left": "on the left", "center": "in the center", "right": "on the right",
    "bottom left": "in the bottom left", "bottom": "at the bottom",
    "bottom right": "in the bottom right",
}
SPLITS = ("train", "val", "test", "test_novel")
MSRVTT_SPLITS = {"train": "train", "val": "validate", "test": "test", "test_novel": "test_novel"}
MAX_CAPTION_TOKENS = 16
CAPTIONS_PER_ITEM = 5
ANSWERS_PER_QUESTION = 10
FPS = 10
MIN_FRAMES = 16  # LRCN's activity clips are 16 frames long.
JPEG_QUALITY = 95

# Scenes with few objects are more common: they are what a small captioner learns first.
_OBJECT_COUNT_PROBS = (0.3, 0.35, 0.2, 0.15)
_CLUTTERED_COUNT_PROBS = (0.15, 0.25, 0.2, 0.15, 0.13, 0.12)
_CLUTTERED_SCALES = {"small": (0.8, 1.2), "large": (0.85, 1.35)}
_NOISE_SIGMA = 10.0  # grey levels of per-pixel noise over a cluttered image
# The world's grammar: every word a caption uses for a count, a size, a shape or a relation. The
# generator writes captions with these words and `vcaption.metrics.grounding` reads them back with
# the same tables, so the two cannot drift apart.
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six")
SIZE_SYNONYMS = {"large": ("large", "big"), "small": ("small", "little", "tiny")}
SHAPE_SYNONYMS = {"circle": ("circle", "ball"), "square": ("square", "box")}
# Caption phrase -> the relation of `relations(a, b)` it states ("a is <phrase> b").
RELATION_PHRASES = {"above": "above", "below": "below", "left of": "left of",
                    "to the left of": "left of", "right of": "right of",
                    "to the right of": "right of"}
CONVERSE_RELATION = {"above": "below", "below": "above", "left of": "right of", "right of": "left of"}
# Independent random streams per item kind, so adding videos never changes the images.
_IMAGE_STREAM, _VIDEO_STREAM, _SPLIT_STREAM = 0, 1, 2
_NOC_LABELLED_STREAM, _NOC_TEXT_STREAM = 3, 4  # the NOC world's unpaired images and sentences
_ANNOTATOR_STREAM = 7  # Visual Genome region annotators (`annotator_regions`)
_INFO_DATE = "2024-01-01 00:00:00"  # fixed so that files are byte-identical across runs


# ----------------------------------------------------------------------------------------------
# Scenes


@dataclasses.dataclass(frozen=True)
class SceneObject:
    """One filled object in one cell of the 3x3 grid.

    Args:
        shape: one of `SHAPES`.
        colour: one of the keys of `COLOURS`.
        size: "small" or "large" (see `SIZES`).
        row: grid row, 0 (top) to 2 (bottom).
        col: grid column, 0 (left) to 2 (right).
        jitter_x: horizontal offset from the cell centre in [-1, 1], as a fraction of the
            largest offset that keeps the object inside its cell (scaled down to keep it small).
        jitter_y: the same, vertically.
        scale: the object's extent relative to its size class (cluttered worlds vary it; past
            ~1.15 a large object overflows its cell and partly covers or hides behind its
            neighbours, drawn in reading order).

    Example:
        >>> SceneObject("circle", "red", "large", 0, 0).phrase
        'large red circle'
    """

    shape: str
    colour: str
    size: str
    row: int
    col: int
    jitter_x: float = 0.0
    jitter_y: float = 0.0
    scale: float = 1.0

    @property
    def cell(self) -> str:
        """The cell name: "top left" ... "bottom right"."""
        return CELL_NAMES[self.row][self.col]

    @property
    def position(self) -> str:
        """The cell as a phrase: "in the top left", "at the bottom", "in the center"."""
        return POSITION_PHRASES[self.cell]

    @property
    def phrase(self) -> str:
        """The region phrase of Visual Genome: "<size> <colour> <shape>"."""
        return f"{self.size} {self.colour} {self.shape}"


@dataclasses.dataclass(frozen=True)
class Scene:
    """An image of the shapes world: its objects in reading order (top-to-bottom, left-to-right).

    Args:
        objects: one to nine `SceneObject`s in distinct cells.
        texture_seed: None for the plain dark background; else the seed of a cluttered one (a
            random tint, a gradient and pixel noise over the whole image, objects included).

    Example:
        >>> scene = sample_scene(np.random.default_rng(0))
        >>> image = render_scene(scene, image_size=128)  # uint8 [128, 128, 3] RGB
    """

    objects: tuple[SceneObject, ...]
    texture_seed: int | None = None


@dataclasses.dataclass(frozen=True)
class Question:
    """A VQA question about a scene with its correct answer.

    Args:
        question: the question text ("what color is the circle?").
        answer: the correct answer in the VQA normal form ("red", "2", "yes").
        answer_type: "yes/no", "number" or "other".
        question_type: the question prefix VQA reports accuracy by ("what color is the").
    """

    question: str
    answer: str
    answer_type: str
    question_type: str


@dataclasses.dataclass(frozen=True)
class HeldOut:
    """Compositions that no train or val image, caption or question of a novel-split world contains.

    Only the `test_novel` split has them (every one of its images at least one), so a model that
    names them has composed words it only ever saw apart.

    Args:
        colour_shapes: (colour, shape) pairs, e.g. ("red", "triangle"): no object has both.
        relations: (shape, relation, shape) triples, e.g. ("circle", "left of", "triangle"): no
            object of the first shape stands in that relation (`relations`) to one of the second.

    Example:
        >>> DEFAULT_HELD_OUT.in_scene(Scene((SceneObject("triangle", "red", "large", 0, 0),)))
        True
    """

    colour_shapes: tuple[tuple[str, str], ...] = ()
    relations: tuple[tuple[str, str, str], ...] = ()

    def pair_objects(self, scene: Scene) -> list[SceneObject]:
        """The scene's objects whose colour and shape form a held-out pair."""
        pairs = set(self.colour_shapes)
        return [o for o in scene.objects if (o.colour, o.shape) in pairs]

    def scene_relations(self, scene: Scene) -> list[tuple[str, str, str]]:
        """The held-out relation triples that hold between two of the scene's objects."""
        found = []
        for first, relation, second in self.relations:
            if any(a is not b and a.shape == first and b.shape == second and relations(a, b)[relation]
                   for a in scene.objects for b in scene.objects):
                found.append((first, relation, second))
        return found

    def in_scene(self, scene: Scene) -> bool:
        return bool(self.pair_objects(scene) or self.scene_relations(scene))

    def to_json(self) -> dict:
        return {"colour_shapes": [list(p) for p in self.colour_shapes],
                "relations": [list(r) for r in self.relations]}

    @classmethod
    def from_json(cls, data: dict | None) -> "HeldOut":
        data = data or {}
        return cls(tuple(tuple(p) for p in data.get("colour_shapes", ())),
                   tuple(tuple(r) for r in data.get("relations", ())))


# One colour per shape and no colour twice, so every shape and every colour still occurs in
# training with other partners; the relations pair shapes whose other relations stay in training.
DEFAULT_HELD_OUT = HeldOut(
    colour_shapes=(("red", "triangle"), ("blue", "circle"), ("green", "diamond"), ("yellow", "square")),
    relations=(("circle", "left of", "triangle"), ("square", "above", "diamond")))
# Rejection sampling needs ~1.7 draws per training scene and ~3 per novel one; this bound only
# guards against a held-out set that no scene can avoid.
_MAX_SCENE_DRAWS = 1000


def sample_split_scene(rng: np.random.Generator, held_out: HeldOut, novel: bool,
                       cluttered: bool = False) -> Scene:
    """A scene of a held-out world: with `novel`, one holding a held-out composition, else one
    holding none (redrawn from the same stream until it fits)."""
    return _redraw(lambda: sample_scene(rng, cluttered), lambda scene: held_out.in_scene(scene) == novel,
                   f"scene fits held-out set {held_out} (novel={novel})")


def _redraw(draw, fits, what: str):
    """The first `draw()` that `fits`; the bound only guards against a held-out set nothing avoids."""
    for _ in range(_MAX_SCENE_DRAWS):
        item = draw()
        if fits(item):
            return item
    raise ValueError(f"no {what} in {_MAX_SCENE_DRAWS} draws")


def sample_scene(rng: np.random.Generator, cluttered: bool = False,
                 shape_names: Sequence[str] = SHAPES) -> Scene:
    """Draws 1-4 objects with random shape, colour and size in distinct random cells.

    Args:
        rng: the random stream; the scene depends on nothing else.
        cluttered: the harder world: 1-6 objects, sizes varied within their class (x0.8-1.2
            small, x0.85-1.35 large, so large ones may overlap a neighbour), twice the position
            jitter, and a textured, noisy background (`Scene.texture_seed`).
        shape_names: the object classes drawn from (`NOC_SHAPES` in a NOC world).

    Example:
        >>> sample_scene(np.random.default_rng(0)).objects[0].phrase
        'small purple diamond'
    """
    probs = _CLUTTERED_COUNT_PROBS if cluttered else _OBJECT_COUNT_PROBS
    count = int(rng.choice(len(probs), p=probs)) + 1
    cells = sorted(int(c) for c in rng.choice(9, size=count, replace=False))
    colours, sizes = list(COLOURS), list(SIZES)
    spread = 2.0 if cluttered else 1.0
    objects = []
    for cell in cells:
        obj = SceneObject(
            shape=shape_names[int(rng.integers(len(shape_names)))],
            colour=colours[int(rng.integers(len(colours)))],
            size=sizes[int(rng.integers(len(sizes)))],
            row=cell // 3, col=cell % 3,
            jitter_x=round(float(rng.uniform(-spread, spread)), 3),
            jitter_y=round(float(rng.uniform(-spread, spread)), 3))
        if cluttered:
            low, high = _CLUTTERED_SCALES[obj.size]
            obj = dataclasses.replace(obj, scale=round(float(rng.uniform(low, high)), 3))
        objects.append(obj)
    texture = int(rng.integers(2**31)) if cluttered else None
    return Scene(tuple(objects), texture)


def _cell_span(index: int, image_size: int) -> tuple[int, int]:
    """[start, end) pixels of grid row/column `index`."""
    return index * image_size // 3, (index + 1) * image_size // 3


def _odd_extent(fraction: float, length: int) -> int:
    """Half-width r of an object whose side 2r+1 is ~fraction*length (odd: it has a centre pixel)."""
    return max(1, int(round(fraction * length / 2 - 0.5)))


def object_box(obj: SceneObject, image_size: int) -> tuple[int, int, int, int]:
    """The tight bounding box [x, y, width, height] of `obj` in pixels.

    Every shape is drawn to fill its (2r+1)-pixel square exactly, so the box is that square.

    Args:
        obj: the object.
        image_size: the side of the square canvas in pixels.

    Example:
        >>> object_box(SceneObject("square", "red", "large", 0, 0), 128)
        (3, 3, 35, 35)
    """
    x0, x1 = _cell_span(obj.col, image_size)
    y0, y1 = _cell_span(obj.row, image_size)
    cell = min(x1 - x0, y1 - y0)
    r = _odd_extent(SIZES[obj.size] * obj.scale, cell)
    side = 2 * r + 1

    def start(lo: int, hi: int, jitter: float) -> int:
        slack = (hi - lo) - side
        if slack < 0:  # wider than its cell: centred on it, overlapping its neighbours
            return int(np.clip(lo + slack // 2, 0, image_size - side))
        # A quarter of the slack keeps jitter "small"; clipping keeps the object in its cell.
        return int(np.clip(lo + slack // 2 + round(jitter * slack / 4), lo, hi - side))

    return start(x0, x1, obj.jitter_x), start(y0, y1, obj.jitter_y), side, side


def draw_shape(canvas: np.ndarray, shape: str, colour: Sequence[int], x: int, y: int, r: int) -> None:
    """Fills `shape` into the (2r+1)-pixel square at top-left (x, y) of `canvas`, in place.

    Anti-aliasing is off so that every pixel has exactly the object colour or the background:
    boxes are exact and colour checks need no tolerance before JPEG.
    """
    colour = tuple(int(c) for c in colour)
    cx, cy, side = x + r, y + r, 2 * r
    if shape == "circle":
        cv2.circle(canvas, (cx, cy), r, colour, thickness=-1, lineType=cv2.LINE_8)
        return
    if shape == "square":
        cv2.rectangle(canvas, (x, y), (x + side, y + side), colour, thickness=-1, lineType=cv2.LINE_8)
        return
    if shape == "triangle":
        points = [(cx, y), (x, y + side), (x + side, y + side)]
    elif shape == "diamond":
        points = [(cx, y), (x + side, cy), (cx, y + side), (x, cy)]
    elif shape in _NOC_OUTLINES:
        points = [(int(round(cx + u * r)), int(round(cy + v * r))) for u, v in _NOC_OUTLINES[shape]]
    else:
        raise ValueError(f"unknown shape {shape!r}; expected one of {NOC_SHAPES}")
    cv2.fillPoly(canvas, [np.array(points, np.int32)], colour, lineType=cv2.LINE_8)


def _star_outline(points: int = 5, inner: float = 0.45) -> tuple[tuple[float, float], ...]:
    """Unit-radius star: `points` tips alternating with inner corners, the first tip at the top."""
    angles = -np.pi / 2 + np.arange(2 * points) * np.pi / points
    radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return tuple((float(r * np.cos(a)), float(r * np.sin(a))) for r, a in zip(radii, angles))


# The NOC world's extra classes as polygons in the unit square [-1, 1]^2 (scaled by r at drawing).
_NOC_OUTLINES = {
    "star": _star_outline(),
    "hexagon": tuple((float(np.cos(a)), float(np.sin(a))) for a in np.arange(6) * np.pi / 3),
    "cross": ((-0.33, -1), (0.33, -1), (0.33, -0.33), (1, -0.33), (1, 0.33), (0.33, 0.33), (0.33, 1),
              (-0.33, 1), (-0.33, 0.33), (-1, 0.33), (-1, -0.33), (-0.33, -0.33)),
    "arrow": ((0, -1), (1, 0), (0.4, 0), (0.4, 1), (-0.4, 1), (-0.4, 0), (-1, 0)),
}


def blank_canvas(size: int) -> np.ndarray:
    """A uint8 [size, size, 3] RGB canvas filled with `BACKGROUND`."""
    return np.full((size, size, 3), BACKGROUND, np.uint8)


def render_scene(scene: Scene, image_size: int = 128) -> np.ndarray:
    """Draws a scene: uint8 [image_size, image_size, 3] RGB.

    Args:
        scene: the scene to draw.
        image_size: the side of the square canvas in pixels (at least 24).

    Example:
        >>> render_scene(Scene((SceneObject("circle", "red", "large", 1, 1),)), 96).shape
        (96, 96, 3)
    """
    if scene.texture_seed is None:
        canvas = blank_canvas(image_size)
    else:
        rng = np.random.default_rng(scene.texture_seed)
        canvas = textured_canvas(image_size, rng)
    for obj in scene.objects:
        x, y, side, _ = object_box(obj, image_size)
        draw_shape(canvas, obj.shape, COLOURS[obj.colour], x, y, (side - 1) // 2)
    if scene.texture_seed is not None:
        canvas = add_noise(canvas, rng)
    return canvas


def textured_canvas(size: int, rng: np.random.Generator) -> np.ndarray:
    """A dark background with a random grey-ish tint and a linear gradient in a random direction
    (up to 50 grey levels apart), so that "background" is no single colour a model can subtract."""
    tint = rng.uniform(15, 60) + rng.uniform(-10, 10, size=3)  # [3]
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.linspace(-0.5, 0.5, size)
    gradient = np.cos(angle) * ramp[None, :] + np.sin(angle) * ramp[:, None]  # [size, size]
    canvas = tint[None, None, :] + rng.uniform(20, 50) * gradient[..., None]
    return np.clip(canvas, 0, 255).astype(np.uint8)


def add_noise(image: np.ndarray, rng: np.random.Generator, sigma: float = _NOISE_SIGMA) -> np.ndarray:
    """Gaussian pixel noise over everything (camera noise), clipped to uint8."""
    noisy = image.astype(np.float32) + rng.normal(0.0, sigma, size=image.shape)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------
# Captions


def num_tokens(text: str) -> int:
    """Word count under `vcaption.text.normalize`, for ASCII text like ours.

    Only used to choose templates that fit the budget; `generate` checks the final captions with
    the TensorFlow tokenizer itself.
    """
    return len("".join(c for c in text.lower() if c.isalnum() or c.isspace()).split())


def _article(phrase: str) -> str:
    return ("an " if phrase[:1] in "aeiou" else "a ") + phrase


def _describe(obj: SceneObject, rng: np.random.Generator | None, size: bool = True) -> str:
    """ "large red circle"; with an rng, sizes and some shapes get synonyms ("big red ball")."""
    size_word, shape_word = obj.size, obj.shape
    if rng is not None:
        size_word = SIZE_SYNONYMS[obj.size][int(rng.integers(len(SIZE_SYNONYMS[obj.size])))]
        if obj.shape in SHAPE_SYNONYMS and rng.random() < 0.3:
            shape_word = SHAPE_SYNONYMS[obj.shape][1]
    words = ([size_word] if size else []) + [obj.colour, shape_word]
    return " ".join(words)


def _join(items: Sequence[str]) -> str:
    """ "a", "a and b", "a, b and c"."""
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


def _listing(objects: Sequence[SceneObject], rng, size: bool = True, position: bool = True,
             article: bool = True) -> str:
    parts = []
    for obj in objects:
        part = _describe(obj, rng, size)
        part = _article(part) if article else part
        parts.append(f"{part} {obj.position}" if position else part)
    return _join(parts)


def _first_fitting(candidates: Sequence[str], crowded=None) -> str:
    """The first candidate within the token budget; else `crowded()`, the terse form that five or
    six objects need ("five shapes: red circle, ..."). It is called only then, so the random
    draws (and files) of scenes that fit stay what they were before crowded scenes existed."""
    for caption in candidates:
        if num_tokens(caption) <= MAX_CAPTION_TOKENS:
            return caption
    if crowded is not None:
        return _first_fitting([crowded()])
    raise AssertionError(f"no caption fits {MAX_CAPTION_TOKENS} tokens: {candidates}")


def _terse(objects: Sequence[SceneObject], rng) -> str:
    """ "red circle, blue square and green triangle": colour and shape only, no articles."""
    return _listing(objects, rng, size=False, position=False, article=False)


def _canonical(objects: Sequence[SceneObject], rng) -> str:
    """The shared core: objects in reading order, with positions while they fit."""
    return _first_fitting([
        _listing(objects, rng),
        _listing(objects, rng, position=False),
        _listing(objects, rng, size=False, position=False),
    ], crowded=lambda: f"{NUMBER_WORDS[len(objects)]} shapes: {_terse(objects, rng)}")


def _relation_caption(a: SceneObject, b: SceneObject, rng) -> str:
    """A true relation between a and b, where a comes first in reading order."""
    first, second = _article(_describe(a, rng)), _article(_describe(b, rng))
    if a.row < b.row:
        forward, backward = "above", "below"
    else:  # same row, a is further left
        forward = ("left of", "to the left of")[int(rng.integers(2))]
        backward = ("right of", "to the right of")[int(rng.integers(2))]
    verb = ("is ", "")[int(rng.integers(2))]
    if rng.random() < 0.5:
        return f"{first} {verb}{forward} {second}"
    return f"{second} {verb}{backward} {first}"


def _count_caption(objects: Sequence[SceneObject], rng) -> str:
    n = len(objects)
    if n == 1:
        obj = objects[0]
        template = ("just one {} {}", "a single {} {}", "one shape, {} {}")[int(rng.integers(3))]
        described = _describe(obj, rng)
        return template.format(_article(described) if template[0] == "o" else described,
                               obj.position)
    count = f"{NUMBER_WORDS[n]} shapes"
    prefix = [count, f"there are {count}", f"an image with {count}"][int(rng.integers(3))]
    return _first_fitting([
        f"{prefix}: {_listing(objects, rng, position=False)}",
        f"{count}: {_listing(objects, rng, position=False)}",
        f"{count}: {_listing(objects, rng, size=False, position=False)}",
    ], crowded=lambda: f"{count}: {_terse(objects, rng)}")


def _largest_two(objects: Sequence[SceneObject]) -> list[SceneObject]:
    order = sorted(range(len(objects)), key=lambda i: (objects[i].size != "large", i))
    return [objects[i] for i in sorted(order[:2])]  # back in reading order


def scene_captions(scene: Scene, rng: np.random.Generator) -> list[str]:
    """Five true captions of at most 16 tokens, the canonical one first.

    1. canonical: "a large red circle in the top left and a small blue square in the center"
       (3-4 objects: "a large red circle, a small blue square and a large green triangle");
    2. the same with synonyms: "a big red ball in the top left and a tiny blue box ...";
    3. the same behind a prefix: "there is ...", "a picture of ...", "an image with ...";
    4. a relation ("a large red circle is above a small blue square"), or with 3-4 objects
       the two largest objects with their positions;
    5. a count ("two shapes: a large red circle and a small blue square"), or with 3-4 objects
       a count or a relation.

    Args:
        scene: the scene to describe.
        rng: the random stream for templates and synonyms.

    Example:
        >>> scene_captions(Scene((SceneObject("circle", "red", "large", 0, 0),)), rng)[0]
        'a large red circle in the top left'
    """
    objects = scene.objects
    n = len(objects)
    captions = [_canonical(objects, None), _canonical(objects, rng)]
    prefixes = ["there is", "a picture of", "an image with", "a photo of"]
    rng.shuffle(prefixes)
    prefixed = [f"{p} {_canonical(objects, rng)}" for p in prefixes]
    prefixed += [f"{p} {_listing(objects, rng, size=False)}" for p in prefixes]
    prefixed += [f"{p} {_listing(objects, rng, size=False, position=False)}" for p in prefixes]
    captions.append(_first_fitting(prefixed, crowded=lambda: f"{prefixes[0]} {_terse(objects, rng)}"))
    if n == 1:
        obj = objects[0]
        captions.append(f"the only shape is {_article(_describe(obj, rng))} {obj.position}")
        captions.append(_count_caption(objects, rng))
        return captions
    # Prefer two objects that look different: "a red circle above a red circle" is true but odd.
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    distinct = [(i, j) for i, j in pairs if objects[i].phrase != objects[j].phrase] or pairs
    i, j = distinct[int(rng.integers(len(distinct)))]
    relation = _relation_caption(objects[i], objects[j], rng)
    if n == 2:
        return captions + [relation, _count_caption(objects, rng)]
    two = _largest_two(objects)
    captions.append(_first_fitting([_listing(two, rng), _listing(two, rng, size=False)]))
    captions.append(relation if rng.random() < 0.5 else _count_caption(objects, rng))
    return captions


# ----------------------------------------------------------------------------------------------
# Questions


def _unique(objects: Sequence[SceneObject], key) -> dict:
    counts = collections.Counter(key(o) for o in objects)
    return {key(o): o for o in objects if counts[key(o)] == 1}


def relations(a: SceneObject, b: SceneObject) -> dict[str, bool]:
    """Which of a's relations to b hold; "left of" compares columns only, "above" rows only."""
    return cell_relations(a.row, a.col, b.row, b.col)


def cell_relations(a_row: int, a_col: int, b_row: int, b_col: int) -> dict[str, bool]:
    """`relations` from grid cells alone (what `scenes.json` records of each object)."""
    return {"left of": a_col < b_col, "right of": a_col > b_col,
            "above": a_row < b_row, "below": a_row > b_row}


def _other_questions(scene: Scene, rng) -> list[Question]:
    objects = scene.objects
    questions = [Question(f"what color is the {shape}?", obj.colour, "other", "what color is the")
                 for shape, obj in _unique(objects, lambda o: o.shape).items()]
    questions += [Question(f"what shape is the {colour} object?", obj.shape, "other",
                           "what shape is the")
                  for colour, obj in _unique(objects, lambda o: o.colour).items()]
    obj = objects[int(rng.integers(len(objects)))]
    questions.append(Question(f"what color is the shape {obj.position}?", obj.colour, "other",
                              "what color is the"))
    named = _unique(objects, lambda o: (o.colour, o.shape))
    for (colour, shape), anchor in named.items():
        for relation in ("left of", "right of", "above", "below"):
            matches = [o for o in objects if o is not anchor and relations(o, anchor)[relation]]
            if len(matches) == 1:
                questions.append(Question(f"what shape is {relation} the {colour} {shape}?",
                                          matches[0].shape, "other", "what shape is"))
    return questions


def _count_questions(scene: Scene, rng) -> list[Question]:
    objects = scene.objects
    questions = [Question("how many shapes are there?", str(len(objects)), "number", "how many")]
    present = sorted({o.colour for o in objects}, key=list(COLOURS).index)
    # Mostly colours that occur; sometimes one that does not, so "0" is a possible answer.
    pool = present if rng.random() < 0.75 else [c for c in COLOURS if c not in present]
    colour = pool[int(rng.integers(len(pool)))]
    count = sum(o.colour == colour for o in objects)
    questions.append(Question(f"how many {colour} shapes are there?", str(count), "number",
                              "how many"))
    shape = objects[int(rng.integers(len(objects)))].shape
    count = sum(o.shape == shape for o in objects)
    questions.append(Question(f"how many {shape}s are there?", str(count), "number", "how many"))
    return questions


def _names_held_out(held_out: HeldOut, first: str, relation: str, second: str) -> bool:
    """Whether "<first shape> <relation> <second shape>" states a held-out relation either way round."""
    return ((first, relation, second) in held_out.relations
            or (second, CONVERSE_RELATION[relation], first) in held_out.relations)


def _yes_no_questions(scene: Scene, rng, held_out: HeldOut) -> list[Question]:
    """Existence and relation questions, each answered "yes" with probability 1/2. Questions never
    name a held-out composition, even to deny it: the words must stay apart outside `test_novel`."""
    objects = scene.objects
    present = {(o.colour, o.shape) for o in objects} | set(held_out.colour_shapes)
    if rng.random() < 0.5:
        obj = objects[int(rng.integers(len(objects)))]
        colour, shape, answer = obj.colour, obj.shape, "yes"
    else:
        absent = [(c, s) for c in COLOURS for s in SHAPES if (c, s) not in present]
        colour, shape = absent[int(rng.integers(len(absent)))]
        answer = "no"
    questions = [Question(f"is there {_article(colour)} {shape}?", answer, "yes/no", "is there a")]
    named = list(_unique(objects, lambda o: (o.colour, o.shape)).values())
    if len(named) >= 2:
        i, j = (int(k) for k in rng.choice(len(named), size=2, replace=False))
        holds = relations(named[i], named[j])
        want = rng.random() < 0.5
        a, b = named[i], named[j]
        allowed = [r for r in holds if not _names_held_out(held_out, a.shape, r, b.shape)]
        options = [r for r in allowed if holds[r] == want] or allowed
        if not options:
            return questions
        relation = options[int(rng.integers(len(options)))]
        questions.append(Question(
            f"is the {a.colour} {a.shape} {relation} the {b.colour} {b.shape}?",
            "yes" if holds[relation] else "no", "yes/no", "is the"))
    return questions


def scene_questions(scene: Scene, rng: np.random.Generator,
                    held_out: HeldOut = HeldOut()) -> list[Question]:
    """Three to five questions with at least one of each answer type ("other", "number", "yes/no").

    Colour questions name a shape only when it is unique in the scene (and shape questions a
    colour), so every question has exactly one correct answer.

    Args:
        scene: the scene asked about.
        rng: the random stream.
        held_out: compositions no question may name (outside `test_novel`).

    Example:
        >>> [q.question for q in scene_questions(scene, rng)]
        ['what color is the circle?', 'how many shapes are there?', 'is there a blue square?']
    """
    groups = [_other_questions(scene, rng), _count_questions(scene, rng),
              _yes_no_questions(scene, rng, held_out)]
    chosen = []
    for group in groups:
        chosen.append(group.pop(int(rng.integers(len(group)))))
    rest = [q for group in groups for q in group]
    extra = int(rng.integers(0, 3))
    for k in rng.permutation(len(rest))[:extra]:
        chosen.append(rest[int(k)])
    return [chosen[int(k)] for k in rng.permutation(len(chosen))]


def _answer_variant(question: Question, rng) -> str:
    """A different string that the official VQA answer normaliser maps to the same answer."""
    answer = question.answer
    if question.answer_type == "number":
        variants = [NUMBER_WORDS[int(answer)], f"{answer} "]
    elif question.answer_type == "yes/no":
        variants = [answer.capitalize(), f"{answer}."]
    elif answer in SHAPES:
        variants = [f"a {answer}", f"the {answer}", answer.capitalize()]
    else:
        variants = [answer.capitalize(), f"{answer}."]
    return variants[int(rng.integers(len(variants)))]


def _wrong_answer(question: Question, rng) -> str:
    answer = question.answer
    if question.answer_type == "yes/no":
        return "no" if answer == "yes" else "yes"
    if question.answer_type == "number":
        options = [str(v) for v in (int(answer) - 1, int(answer) + 1) if v >= 0]
    elif answer in SHAPES:
        options = [s for s in SHAPES if s != answer]
    else:
        options = [c for c in COLOURS if c != answer]
    return options[int(rng.integers(len(options)))]


def human_answers(question: Question, rng: np.random.Generator) -> list[dict]:
    """Ten simulated VQA answers: ~90% correct, the rest normaliser variants or plausible mistakes.

    Args:
        question: the question with its correct answer.
        rng: the random stream.

    Returns:
        VQA v2 answer dicts {"answer", "answer_confidence", "answer_id"} with ids 1..10.
    """
    answers = []
    for answer_id in range(1, ANSWERS_PER_QUESTION + 1):
        u = rng.random()
        if u < 0.9:
            answer, confidence = question.answer, "yes"
        elif u < 0.95:
            answer, confidence = _answer_variant(question, rng), "yes"
        else:
            answer, confidence = _wrong_answer(question, rng), "maybe"
        answers.append({"answer": answer, "answer_confidence": confidence, "answer_id": answer_id})
    return answers


def most_common_answer(answers: Sequence[dict]) -> str:
    """VQA's `multiple_choice_answer`: the most frequent answer, the earliest one on ties."""
    counts = collections.Counter(a["answer"] for a in answers)
    return max(counts, key=lambda a: (counts[a], -[x["answer"] for x in answers].index(a)))


# ----------------------------------------------------------------------------------------------
# Videos


# Ten activities. Four move throughout; the others need the order of the frames: "then stopping"
# looks, frame by frame, like moving throughout followed by a still object, and "then back" shows
# the same positions and the same motions as its mirror ("moving right then back" covers the same
# segment in the other order), so a single frame, or a bag of frames, cannot tell them apart.
ACTIVITIES = ("moving left", "moving right", "moving up", "moving down",
              "moving left then stopping", "moving right then stopping",
              "moving left then back", "moving right then back", "growing", "shrinking")
# The semantic tuple of a clip (LRCN §6: subject, verb, object/place), one word or phrase per slot:
# the subject is the moving object's colour and shape, the verb what it does, the place where it
# goes. (verb, place) names the activity; every value is a word the captions use.
TUPLE_SLOTS = ("colour", "shape", "verb", "place")
TUPLE_VERBS = ("moves", "stops", "returns", "grows", "shrinks")
TUPLE_PLACES = ("left", "right", "up", "down", "middle")
TUPLE_VALUES = {"colour": tuple(COLOURS), "shape": SHAPES, "verb": TUPLE_VERBS, "place": TUPLE_PLACES}
_ACTIVITY_TUPLES = {"moving left": ("moves", "left"), "moving right": ("moves", "right"),
                    "moving up": ("moves", "up"), "moving down": ("moves", "down"),
                    "moving left then stopping": ("stops", "left"),
                    "moving right then stopping": ("stops", "right"),
                    "moving left then back": ("returns", "left"),
                    "moving right then back": ("returns", "right"),
                    "growing": ("grows", "middle"), "shrinking": ("shrinks", "middle")}
_SPEED = 0.6  # frame sides per clip: every mover moves at this speed while it moves
_DISTRACTOR_SPEED = 0.25  # slower, so "the object that moves most" is the subject
# Grey levels of per-pixel noise, drawn anew for every frame. (No camera shake: at 32 pixels a
# one-pixel shake is as large as a mover's motion per frame and drowns the optical flow.)
_CAMERA_NOISE_SIGMA = 8.0


@dataclasses.dataclass(frozen=True)
class VideoObject:
    """An object of a video at one instant, in fractions of the frame side.

    Args:
        shape: one of `SHAPES`.
        colour: one of the keys of `COLOURS`.
        x: horizontal centre in [0, 1].
        y: vertical centre in [0, 1].
        size: side in [0, 1].
    """

    shape: str
    colour: str
    x: float
    y: float
    size: float

    def box(self, video_size: int) -> tuple[int, int, int, int]:
        """[x, y, width, height] in pixels of a `video_size` frame."""
        r = _odd_extent(self.size, video_size)
        return (int(round(self.x * video_size)) - r, int(round(self.y * video_size)) - r,
                2 * r + 1, 2 * r + 1)


def _lerp(a: VideoObject, b: VideoObject, t: float) -> VideoObject:
    mix = lambda u, v: u + (v - u) * t  # noqa: E731
    return dataclasses.replace(a, x=mix(a.x, b.x), y=mix(a.y, b.y), size=mix(a.size, b.size))


@dataclasses.dataclass(frozen=True)
class Video:
    """A shapes-world video: one object that moves from `start` to `end` (reached at time `turn`,
    then still or coming back), a distractor that drifts slowly in its own lane, camera noise.

    Args:
        activity: one of `ACTIVITIES`.
        start: the moving object at the first frame.
        end: the moving object at time `turn` (same shape and colour).
        distractor: at the first frame: an object that drifts at `_DISTRACTOR_SPEED` to
            `distractor_end`, in a place the moving object never covers; or None.
        distractor_end: the distractor at the last frame.
        turn: when (in [0, 1]) the moving object reaches `end`: 1 for movers throughout; after
            it, "then stopping" stays at `end` and "then back" returns to `start`.
        camera_seed: seeds each frame's pixel noise (None: a clean camera).

    Example:
        >>> video = sample_video(np.random.default_rng(0))
        >>> frames = render_video(video, video_size=64, num_frames=20)  # uint8 [20, 64, 64, 3]
    """

    activity: str
    start: VideoObject
    end: VideoObject
    distractor: VideoObject | None = None
    distractor_end: VideoObject | None = None
    turn: float = 1.0
    camera_seed: int | None = None

    def at(self, t: float) -> VideoObject:
        """The moving object at time t in [0, 1]."""
        if t <= self.turn:
            return _lerp(self.start, self.end, t / self.turn)
        if self.activity.endswith("then back"):
            return _lerp(self.end, self.start, (t - self.turn) / (1 - self.turn))
        return self.end

    def distractor_at(self, t: float) -> VideoObject | None:
        if self.distractor is None:
            return None
        return _lerp(self.distractor, self.distractor_end or self.distractor, t)

    @property
    def tuple(self) -> dict[str, str]:
        """The clip's semantic tuple, {slot: value} for every `TUPLE_SLOTS` (LRCN §6)."""
        verb, place = _ACTIVITY_TUPLES[self.activity]
        return {"colour": self.start.colour, "shape": self.start.shape, "verb": verb, "place": place}


def _mover_path(activity: str, rng, lane_centre: float, jitter) -> tuple[tuple, tuple, float]:
    """((x0, y0, size0), (x1, y1, size1), turn) of the moving object."""
    horizontal = "left" in activity or "right" in activity
    towards_low = "left" in activity or "up" in activity  # decreasing x or y
    if activity.endswith("then back"):
        turn, lo = 0.5, float(rng.uniform(0.15, 0.55))
        # The same segment [lo, lo + 0.3] for both directions: only the order differs.
        ends = (lo + _SPEED / 2, lo) if towards_low else (lo, lo + _SPEED / 2)
    elif activity.endswith("then stopping"):
        turn = round(float(rng.uniform(0.4, 0.7)), 3)
        first = float(rng.uniform(0.55, 0.85))
        start = first if towards_low else 1 - first
        ends = (start, start - _SPEED * turn) if towards_low else (start, start + _SPEED * turn)
    elif activity.startswith("moving"):
        turn, ends = 1.0, ((0.8, 0.2) if towards_low else (0.2, 0.8))
    else:
        x, y = 0.5 + jitter(), 0.5 + jitter()
        sizes = (0.15, 0.5) if activity == "growing" else (0.5, 0.15)
        return (x, y, sizes[0]), (x, y, sizes[1]), 1.0
    ends = tuple(round(e, 3) for e in ends)
    across = lane_centre + jitter()
    if horizontal:
        return (ends[0], across, 0.22), (ends[1], across, 0.22), turn
    return (across, ends[0], 0.22), (across, ends[1], 0.22), turn


def sample_video(rng: np.random.Generator) -> Video:
    """Draws an activity, a moving object, (60% of the time) a drifting distractor, and the camera.

    Movers move 0.6 of the frame side per clip while they move and keep to one half of the frame
    (a "lane"); the distractor drifts at 0.25 in the other lane, along it, in a random direction.
    Growing/shrinking objects (size x3.3) stay in the middle and the distractor drifts along the
    top or bottom edge. So the two never overlap, and the distractor never moves like the subject.

    Args:
        rng: the random stream.
    """
    activity = ACTIVITIES[int(rng.integers(len(ACTIVITIES)))]
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    colours = list(COLOURS)
    colour = colours.pop(int(rng.integers(len(colours))))
    jitter = lambda: round(float(rng.uniform(-0.04, 0.04)), 3)  # noqa: E731
    lane = int(rng.integers(2))
    lane_centre, other_lane = (0.28, 0.72) if lane == 0 else (0.72, 0.28)
    start, end, turn = _mover_path(activity, rng, lane_centre, jitter)
    distractor = distractor_end = None
    if rng.random() < 0.6:
        d_shape = SHAPES[int(rng.integers(len(SHAPES)))]
        d_colour = colours[int(rng.integers(len(colours)))]
        along = float(rng.uniform(0.2, 0.8 - _DISTRACTOR_SPEED))
        path = (along, along + _DISTRACTOR_SPEED)[::1 if rng.random() < 0.5 else -1]
        path = tuple(round(p, 3) for p in path)
        if activity in ("growing", "shrinking"):
            edge = 0.12 if rng.random() < 0.5 else 0.88
            points, size = [(p, edge) for p in path], 0.14
        elif "left" in activity or "right" in activity:
            across = other_lane + jitter()
            points, size = [(p, across) for p in path], 0.18
        else:
            across = other_lane + jitter()
            points, size = [(across, p) for p in path], 0.18
        distractor, distractor_end = (VideoObject(d_shape, d_colour, *p, size) for p in points)
    return Video(activity, VideoObject(shape, colour, *start), VideoObject(shape, colour, *end),
                 distractor, distractor_end, turn, int(rng.integers(2 ** 31)))


def video_boxes(video: Video, num_frames: int, video_size: int) -> list[tuple[int, int, int, int]]:
    """The moving object's box [x, y, w, h] in each frame."""
    return [video.at(t / (num_frames - 1)).box(video_size) for t in range(num_frames)]


def distractor_boxes(video: Video, num_frames: int, video_size: int) -> list[tuple[int, int, int, int]]:
    """The distractor's box in each frame ([] without one)."""
    if video.distractor is None:
        return []
    return [video.distractor_at(t / (num_frames - 1)).box(video_size) for t in range(num_frames)]


def render_video(video: Video, video_size: int = 64, num_frames: int = 20) -> np.ndarray:
    """Draws every frame: uint8 [num_frames, video_size, video_size, 3] RGB.

    Args:
        video: the video to draw.
        video_size: the side of the square frames in pixels.
        num_frames: how many frames; at least `MIN_FRAMES`.

    Example:
        >>> render_video(sample_video(np.random.default_rng(0)), 32, 16).shape
        (16, 32, 32, 3)
    """
    if num_frames < MIN_FRAMES:
        raise ValueError(f"num_frames must be >= {MIN_FRAMES}, got {num_frames}")
    noise = None if video.camera_seed is None else np.random.default_rng(video.camera_seed)
    distractors = distractor_boxes(video, num_frames, video_size)
    frames = np.empty((num_frames, video_size, video_size, 3), np.uint8)
    for t, box in enumerate(video_boxes(video, num_frames, video_size)):
        frame = blank_canvas(video_size)
        if distractors:
            x, y, side, _ = distractors[t]
            draw_shape(frame, video.distractor.shape, COLOURS[video.distractor.colour], x, y,
                       (side - 1) // 2)
        draw_shape(frame, video.start.shape, COLOURS[video.start.colour], box[0], box[1],
                   (box[2] - 1) // 2)
        frames[t] = frame if noise is None else add_noise(frame, noise, _CAMERA_NOISE_SIGMA)
    return frames


_VIDEO_TEMPLATES = {
    "moving left": ("{a} moves to the left", "{a} is moving left", "{the} slides from right to left",
                    "{a} moving to the left", "{a} travels from the right side to the left side",
                    "{the} goes left across the screen"),
    "moving right": ("{a} moves to the right", "{a} is moving right",
                     "{the} slides from left to right", "{a} moving to the right",
                     "{a} travels from the left side to the right side",
                     "{the} goes right across the screen"),
    "moving up": ("{a} moves up", "{a} is moving up", "{the} rises from the bottom to the top",
                  "{a} moving upward", "{a} travels from the bottom to the top",
                  "{the} goes up the screen"),
    "moving down": ("{a} moves down", "{a} is moving down", "{the} falls from the top to the bottom",
                    "{a} moving downward", "{a} travels from the top to the bottom",
                    "{the} goes down the screen"),
    "moving left then stopping": ("{a} moves left and stops", "{a} moves to the left then stops",
                                  "{the} slides left and comes to a stop",
                                  "{a} moving left then stopping", "{a} goes left and then stays still",
                                  "{the} stops after moving left"),
    "moving right then stopping": ("{a} moves right and stops", "{a} moves to the right then stops",
                                   "{the} slides right and comes to a stop",
                                   "{a} moving right then stopping",
                                   "{a} goes right and then stays still",
                                   "{the} stops after moving right"),
    "moving left then back": ("{a} moves left and returns", "{a} goes to the left and comes back",
                              "{the} slides left and back again", "{a} moving left then back",
                              "{a} goes left and then returns to the right",
                              "{the} returns after moving left"),
    "moving right then back": ("{a} moves right and returns", "{a} goes to the right and comes back",
                               "{the} slides right and back again", "{a} moving right then back",
                               "{a} goes right and then returns to the left",
                               "{the} returns after moving right"),
    "growing": ("{a} grows bigger", "{a} is growing", "{the} gets larger and larger",
                "{a} growing in size", "a small {o} becomes large", "{the} expands"),
    "shrinking": ("{a} shrinks", "{a} is shrinking", "{the} gets smaller and smaller",
                  "{a} shrinking in size", "a large {o} becomes small", "{the} contracts"),
}
_VIDEO_VERBS = {"moving left": "moves left", "moving right": "moves right", "moving up": "moves up",
                "moving down": "moves down", "moving left then stopping": "moves left and stops",
                "moving right then stopping": "moves right and stops",
                "moving left then back": "moves left and returns",
                "moving right then back": "moves right and returns",
                "growing": "grows", "shrinking": "shrinks"}


def _drift(video: Video) -> str:
    """The distractor's own motion: "drifts left" / "right" / "up" / "down"."""
    d, e = video.distractor, video.distractor_end
    if abs(e.x - d.x) > abs(e.y - d.y):
        return "drifts left" if e.x < d.x else "drifts right"
    return "drifts up" if e.y < d.y else "drifts down"


def video_captions(video: Video, rng: np.random.Generator) -> list[str]:
    """Five true descriptions of at most 16 tokens, the canonical one first.

    Args:
        video: the video to describe.
        rng: the random stream.

    Example:
        >>> video_captions(video, rng)
        ['a red circle moves to the left', 'the red ball slides from right to left', ...]
    """
    obj = video.start

    def fill(template: str, synonyms: bool) -> str:
        shape = obj.shape
        if synonyms and shape in SHAPE_SYNONYMS and rng.random() < 0.25:
            shape = SHAPE_SYNONYMS[shape][1]
        o = f"{obj.colour} {shape}"
        return template.format(a=_article(o), the=f"the {o}", o=o)

    templates = _VIDEO_TEMPLATES[video.activity]
    captions = [fill(templates[0], synonyms=False)]
    for k in rng.permutation(len(templates) - 1)[:CAPTIONS_PER_ITEM - 1]:
        captions.append(fill(templates[int(k) + 1], synonyms=True))
    if video.distractor is not None:
        d = video.distractor
        captions[-1] = (f"{fill('{a}', synonyms=True)} {_VIDEO_VERBS[video.activity]} while "
                        f"{_article(d.colour + ' ' + d.shape)} {_drift(video)}")
    return captions


def write_video(frames: np.ndarray, path: str, fps: int = FPS) -> None:
    """Writes RGB frames as Motion-JPEG AVI and checks that OpenCV reads back every frame."""
    height, width = frames.shape[1:3]
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    if not writer.isOpened():
        raise IOError(f"OpenCV cannot write MJPG video {path}")
    for frame in frames:
        writer.write(np.ascontiguousarray(frame[..., ::-1]))  # OpenCV wants BGR
    writer.release()
    read = count_video_frames(path)
    if read != len(frames):
        raise IOError(f"{path}: wrote {len(frames)} frames but OpenCV reads back {read}")


def count_video_frames(path: str) -> int:
    """How many frames OpenCV can actually decode from `path` (not the header's claim)."""
    capture = cv2.VideoCapture(path)
    count = 0
    while capture.grab():
        count += 1
    capture.release()
    return count


def read_video(path: str) -> np.ndarray:
    """Decodes a video file into uint8 [frames, height, width, 3] RGB."""
    capture = cv2.VideoCapture(path)
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame[..., ::-1])
    capture.release()
    return np.stack(frames) if frames else np.zeros((0, 0, 0, 3), np.uint8)


# ----------------------------------------------------------------------------------------------
# Writing the public formats


def assign_splits(count: int, seed: int, stream: int) -> list[str]:
    """80/10/10 train/val/test for items 0..count-1, shuffled by the seed.

    Val and test get at least one item each once there are three items.
    """
    held_out = max(1, int(round(0.1 * count))) if count >= 3 else 0
    order = np.random.default_rng([seed, _SPLIT_STREAM, stream]).permutation(count)
    splits = ["train"] * count
    for rank, index in enumerate(order[:2 * held_out]):
        splits[int(index)] = "val" if rank < held_out else "test"
    return splits


def _write_json(path: str, obj) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    # json.dumps, not json.dump: only the one-shot form uses the C encoder (json.dump streams
    # through the pure-Python one, ~15 s of the default world's 18,600 images' files).
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def _write_lines(path: str, lines: Sequence[str]) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("".join(line + "\n" for line in lines))
    return path


def _info(seed: int, what: str) -> dict:
    return {"description": f"vcaption shapes world: {what}", "version": "1.0", "year": 2024,
            "contributor": "vcaption (generated)", "url": "", "date_created": _INFO_DATE,
            "seed": seed}


_LICENSES = [{"id": 1, "name": "Generated data, public domain", "url": ""}]


def _file_name(image_id: int) -> str:
    return f"{image_id:012d}.jpg"


@dataclasses.dataclass
class _ImageRecord:
    id: int
    split: str
    scene: Scene
    captions: list[str]
    questions: list[tuple[Question, list[dict]]]


def _make_images(out_dir: str, num_images: int, seed: int, image_size: int,
                 num_novel: int = 0, held_out: HeldOut = HeldOut(), cluttered: bool = False,
                 noc: bool = False) -> list[_ImageRecord]:
    splits = assign_splits(num_images, seed, _IMAGE_STREAM) + ["test_novel"] * num_novel
    os.makedirs(os.path.join(out_dir, "images"), exist_ok=True)
    records = []
    for index, split in enumerate(splits):
        rng = np.random.default_rng([seed, _IMAGE_STREAM, index])
        if noc:
            scene = sample_noc_scene(rng, split, cluttered)
        elif num_novel:
            scene = sample_split_scene(rng, held_out, split == "test_novel", cluttered)
        else:  # the plain world draws exactly as before held-out sets existed
            scene = sample_scene(rng, cluttered)
        image_id = index + 1
        ok, jpeg = cv2.imencode(".jpg", render_scene(scene, image_size)[..., ::-1],
                                [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise IOError(f"JPEG encoding failed for image {image_id}")
        with open(os.path.join(out_dir, "images", _file_name(image_id)), "wb") as f:
            f.write(jpeg.tobytes())
        captions = scene_captions(scene, rng)
        asked = scene_questions(scene, rng, HeldOut() if split == "test_novel" else held_out)
        questions = [(q, human_answers(q, rng)) for q in asked]
        records.append(_ImageRecord(image_id, split, scene, captions, questions))
    return records


def _tokenize_all(captions: list[str]) -> list[list[str]]:
    """Tokenizes with the TF text path (imported late: TF is slow to import)."""
    import tensorflow as tf

    from vcaption import text

    if not captions:
        return []
    tokens = [[t.decode("utf-8") for t in row]
              for row in text.tokenize(tf.constant(captions, tf.string)).to_list()]
    too_long = [c for c, t in zip(captions, tokens) if len(t) > MAX_CAPTION_TOKENS]
    if too_long:
        raise AssertionError(f"captions over {MAX_CAPTION_TOKENS} tokens: {too_long[:3]}")
    return tokens


def _write_karpathy(out_dir, records, tokens) -> str:
    images, sentid = [], 0
    for imgid, record in enumerate(records):
        sentences = []
        for caption in record.captions:
            sentences.append({"tokens": tokens[sentid], "raw": caption, "imgid": imgid,
                              "sentid": sentid})
            sentid += 1
        images.append({"filepath": "images", "sentids": [s["sentid"] for s in sentences],
                       "filename": _file_name(record.id), "imgid": imgid, "split": record.split,
                       "sentences": sentences, "cocoid": record.id})
    return _write_json(os.path.join(out_dir, "dataset_shapes.json"),
                       {"images": images, "dataset": "shapes"})


def _splits_of(items) -> list[str]:
    """The splits a world writes: train/val/test always, `test_novel` only when it has items."""
    present = {item.split if hasattr(item, "split") else item for item in items}
    return [s for s in SPLITS if s != "test_novel" or s in present]


def _coco_image(record: _ImageRecord, image_size: int) -> dict:
    return {"license": 1, "file_name": _file_name(record.id), "coco_url": "",
            "height": image_size, "width": image_size, "date_captured": _INFO_DATE,
            "flickr_url": "", "id": record.id}


def _write_coco(out_dir, records, image_size, seed) -> tuple[dict, dict]:
    captions_paths, instances_paths = {}, {}
    names = world_shapes(records)
    categories = [{"supercategory": "shape", "id": i + 1, "name": s} for i, s in enumerate(names)]
    for split in _splits_of(records):
        chosen = [r for r in records if r.split == split]
        images = [_coco_image(r, image_size) for r in chosen]
        captions = [{"image_id": r.id, "id": r.id * 10 + k, "caption": c}
                    for r in chosen for k, c in enumerate(r.captions)]
        instances = []
        for r in chosen:
            for k, obj in enumerate(r.scene.objects):
                x, y, w, h = object_box(obj, image_size)
                instances.append({"segmentation": [], "area": w * h, "iscrowd": 0,
                                  "image_id": r.id, "bbox": [x, y, w, h],
                                  "category_id": names.index(obj.shape) + 1, "id": r.id * 10 + k})
        base = os.path.join(out_dir, "annotations")
        captions_paths[split] = _write_json(
            os.path.join(base, f"captions_shapes_{split}.json"),
            {"info": _info(seed, "captions"), "licenses": _LICENSES, "images": images,
             "annotations": captions})
        instances_paths[split] = _write_json(
            os.path.join(base, f"instances_shapes_{split}.json"),
            {"info": _info(seed, "instances"), "licenses": _LICENSES, "images": images,
             "annotations": instances, "categories": categories})
    return captions_paths, instances_paths


def _write_flickr8k(out_dir, records) -> dict:
    base = os.path.join(out_dir, "flickr8k")
    paths = {"tokens": _write_lines(
        os.path.join(base, "Flickr8k.token.txt"),
        [f"{_file_name(r.id)}#{k}\t{c}" for r in records for k, c in enumerate(r.captions)])}
    names = {"train": "train", "val": "dev", "test": "test", "test_novel": "testNovel"}
    for split in _splits_of(records):
        name = names[split]
        paths[split] = _write_lines(os.path.join(base, f"Flickr_8k.{name}Images.txt"),
                                    [_file_name(r.id) for r in records if r.split == split])
    return paths


# Region annotators (Visual Genome style): how far each drawn box edge strays from the object's
# (a fraction of its side, Gaussian sd) and the most annotators per object that region ids allow.
_ANNOTATOR_EDGE_SD = 0.08
MAX_REGION_ANNOTATORS = 9


def annotator_regions(obj: SceneObject, image_size: int, rng: np.random.Generator,
                      annotators: int) -> list[tuple[tuple[int, int, int, int], str]]:
    """What `annotators` Visual Genome workers draw and write for one object: [(box, phrase)].

    Real Visual Genome has many overlapping boxes per object, each with its own short phrase
    (Karpathy & Fei-Fei §4 merge those at IoU >= 0.7 before scoring). Each simulated worker draws
    the object's tight box with every edge moved by N(0, `_ANNOTATOR_EDGE_SD` x side) pixels (so
    some boxes fall under IoU 0.7 with the others, as in the real data) and writes one phrase in
    region style: shorter than a caption, no count, sometimes a statement ("the ball is red").

    Example:
        >>> regions = annotator_regions(SceneObject("circle", "red", "large", 0, 0), 128,
        ...                             np.random.default_rng(0), 3)
        >>> len(regions)
        3
    """
    x, y, w, h = object_box(obj, image_size)
    out = []
    for _ in range(annotators):
        dx0, dy0, dx1, dy1 = rng.normal(0.0, _ANNOTATOR_EDGE_SD, size=4) * (w, h, w, h)
        x0 = int(np.clip(round(x + dx0), 0, image_size - 2))
        y0 = int(np.clip(round(y + dy0), 0, image_size - 2))
        x1 = int(np.clip(round(x + w + dx1), x0 + 2, image_size))
        y1 = int(np.clip(round(y + h + dy1), y0 + 2, image_size))
        described = _describe(obj, rng, size=bool(rng.random() < 0.6))
        shape_word = described.split()[-1]
        phrase = [described, _article(described), f"{described} {obj.position}",
                  f"the {shape_word} is {obj.colour}", f"{obj.colour} shape"][int(rng.integers(5))]
        out.append(((x0, y0, x1 - x0, y1 - y0), phrase))
    return out


def _visual_genome_regions(record: _ImageRecord, image_size: int, annotators: int, seed: int) -> list[dict]:
    """One image's Visual Genome regions: each object's tight box with its phrase, then (with
    `annotators`) the boxes and phrases of that many simulated workers, from a random stream of
    their own so that the images and captions stay what they are without them."""
    rng = np.random.default_rng([seed, _ANNOTATOR_STREAM, record.id])
    regions = []
    for k, obj in enumerate(record.scene.objects):
        x, y, w, h = object_box(obj, image_size)
        drawn = [((x, y, w, h), obj.phrase)] + annotator_regions(obj, image_size, rng, annotators)
        for j, ((x, y, w, h), phrase) in enumerate(drawn):
            # Without annotators, the ids of the plain world (one region per object).
            region_id = record.id * 100 + k * 10 + j if annotators else record.id * 10 + k
            regions.append({"region_id": region_id, "width": w, "height": h, "image_id": record.id,
                            "phrase": phrase, "y": y, "x": x})
    return regions


def _write_visual_genome(out_dir, records, image_size, annotators: int = 0, seed: int = 0) -> dict:
    base = os.path.join(out_dir, "visual_genome")
    regions = [{"regions": _visual_genome_regions(r, image_size, annotators, seed), "id": r.id}
               for r in records]
    image_data = [{"width": image_size, "url": f"images/{_file_name(r.id)}", "height": image_size,
                   "image_id": r.id, "coco_id": r.id, "flickr_id": None} for r in records]
    splits = {s: [r.id for r in records if r.split == s] for s in _splits_of(records)}
    return {"regions": _write_json(os.path.join(base, "region_descriptions.json"), regions),
            "image_data": _write_json(os.path.join(base, "image_data.json"), image_data),
            "splits": _write_json(os.path.join(base, "densecap_splits.json"), splits)}


def _write_vqa(out_dir, records, seed) -> tuple[dict, dict]:
    base = os.path.join(out_dir, "vqa")
    questions_paths, annotations_paths = {}, {}
    for split in _splits_of(records):
        questions, annotations = [], []
        for r in (r for r in records if r.split == split):
            for k, (q, answers) in enumerate(r.questions):
                question_id = r.id * 10 + k
                questions.append({"image_id": r.id, "question": q.question,
                                  "question_id": question_id})
                annotations.append({
                    "question_type": q.question_type,
                    "multiple_choice_answer": most_common_answer(answers),
                    "answers": answers, "image_id": r.id, "answer_type": q.answer_type,
                    "question_id": question_id})
        common = {"info": _info(seed, "VQA"), "license": _LICENSES[0], "data_type": "shapes",
                  "data_subtype": split}
        questions_paths[split] = _write_json(
            os.path.join(base, f"v2_OpenEnded_shapes_{split}_questions.json"),
            {**common, "task_type": "Open-Ended", "questions": questions})
        annotations_paths[split] = _write_json(
            os.path.join(base, f"v2_shapes_{split}_annotations.json"),
            {**common, "annotations": annotations})
    return questions_paths, annotations_paths


def _video_pairs(video: Video) -> set[tuple[str, str]]:
    objects = [video.start] + ([video.distractor] if video.distractor is not None else [])
    return {(o.colour, o.shape) for o in objects}


def sample_split_video(rng: np.random.Generator, held_out: HeldOut, novel: bool) -> Video:
    """A video of a held-out world: with `novel`, its moving object is a held-out (colour, shape)
    pair; otherwise neither object is (redrawn from the same stream until it fits)."""
    pairs = set(held_out.colour_shapes)

    def fits(video: Video) -> bool:
        if novel:
            return (video.start.colour, video.start.shape) in pairs
        return not _video_pairs(video) & pairs

    return _redraw(lambda: sample_video(rng), fits, f"video fits held-out set {held_out} (novel={novel})")


def _write_videos(out_dir, num_videos, seed, video_size, num_frames, num_novel: int = 0,
                  held_out: HeldOut = HeldOut()) -> tuple[dict, list[dict]]:
    base = os.path.join(out_dir, "msrvtt")
    os.makedirs(os.path.join(base, "videos"), exist_ok=True)
    splits = assign_splits(num_videos, seed, _VIDEO_STREAM) + ["test_novel"] * num_novel
    videos, sentences, truth = [], [], []
    for n in range(len(splits)):
        rng = np.random.default_rng([seed, _VIDEO_STREAM, n])
        if num_novel:
            video = sample_split_video(rng, held_out, novel=splits[n] == "test_novel")
        else:
            video = sample_video(rng)
        video_id = f"video{n}"
        write_video(render_video(video, video_size, num_frames),
                    os.path.join(base, "videos", f"{video_id}.avi"))
        videos.append({"category": ACTIVITIES.index(video.activity), "url": "",
                       "video_id": video_id, "start time": 0.0, "end time": num_frames / FPS,
                       "split": MSRVTT_SPLITS[splits[n]], "id": n,
                       # Not an MSR-VTT field (its readers ignore it): the clip's semantic tuple
                       # (LRCN §6), for the tuple predictor and the §6 decoders.
                       "tuple": video.tuple})
        captions = video_captions(video, rng)
        for caption in captions:
            sentences.append({"caption": caption, "video_id": video_id, "sen_id": len(sentences)})
        truth.append({"id": n, "video_id": video_id, "split": splits[n],
                      "activity": video.activity, "category": ACTIVITIES.index(video.activity),
                      "object": {"shape": video.start.shape, "colour": video.start.colour},
                      "boxes": [list(b) for b in video_boxes(video, num_frames, video_size)],
                      "tuple": video.tuple, "turn": video.turn,
                      "distractor": None if video.distractor is None else {
                          "shape": video.distractor.shape, "colour": video.distractor.colour,
                          "motion": _drift(video),
                          "boxes": [list(b) for b in distractor_boxes(video, num_frames, video_size)]},
                      "frames": num_frames, "fps": FPS,
                      "captions": captions})
    info = {"contributor": "vcaption (generated)", "data_created": _INFO_DATE,
            "version": "1.0", "description": "vcaption shapes world: videos", "year": "2024",
            "seed": seed}
    paths = {
        "info": _write_json(os.path.join(base, "videodatainfo.json"),
                            {"info": info, "videos": videos, "sentences": sentences}),
        "categories": _write_lines(os.path.join(base, "category.txt"),
                                   [f"{a}\t{i}" for i, a in enumerate(ACTIVITIES)]),
        "videos": os.path.join(base, "videos"),
    }
    return paths, truth


# ----------------------------------------------------------------------------------------------
# The Novel Object Captioner's world (Venugopalan et al., "Captioning Images with Diverse
# Objects", CVPR 2017; the lecture's "Diversifying captions"): paired captions never name the
# held-out classes, but unpaired labelled images and an unpaired text corpus cover every class.


def sample_noc_scene(rng: np.random.Generator, split: str, cluttered: bool = False) -> Scene:
    """A scene over `NOC_SHAPES`: test scenes are i.i.d.; train and val scenes hold no
    `NOC_HELD_OUT` object (redrawn from the same stream), so no paired caption can name one."""
    return _redraw(lambda: sample_scene(rng, cluttered, NOC_SHAPES),
                   lambda scene: split == "test" or not any(o.shape in NOC_HELD_OUT for o in scene.objects),
                   f"{split} scene without {NOC_HELD_OUT}")


def world_shapes(records) -> tuple[str, ...]:
    """The object classes of a world's images: `SHAPES`, or `NOC_SHAPES` once any other occurs."""
    used = {o.shape for r in records for o in r.scene.objects}
    return SHAPES if used <= set(SHAPES) else NOC_SHAPES


def image_labels(scene: Scene) -> list[str]:
    """The classes in a scene, in `NOC_SHAPES` order: an image's multi-label annotation."""
    present = {o.shape for o in scene.objects}
    return [s for s in NOC_SHAPES if s in present]


def _write_noc_unpaired(out_dir: str, num_images: int, num_sentences: int, seed: int,
                        image_size: int, cluttered: bool) -> dict:
    """The NOC world's unpaired data, in plain public formats, under `out_dir/noc/`:

    * `image_labels.txt`: `images/<file><TAB>label,label` per line (an ILSVRC-style multi-label
      list; paths relative to the file), for `num_images` new images over every class, held-out
      ones included, none of them in any caption split;
    * `text_corpus.txt`: `num_sentences` sentences, one per line, written by the world's grammar
      about scenes that are never drawn, mentioning every class (the lecture's "unannotated text
      data"; any plain-text file can be given instead).
    """
    base = os.path.join(out_dir, "noc")
    os.makedirs(os.path.join(base, "images"), exist_ok=True)
    lines = []
    for index in range(num_images):
        rng = np.random.default_rng([seed, _NOC_LABELLED_STREAM, index])
        scene = sample_scene(rng, cluttered, NOC_SHAPES)
        name = f"images/labelled_{index + 1:08d}.jpg"
        ok, jpeg = cv2.imencode(".jpg", render_scene(scene, image_size)[..., ::-1],
                                [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise IOError(f"JPEG encoding failed for labelled image {index + 1}")
        with open(os.path.join(base, name), "wb") as f:
            f.write(jpeg.tobytes())
        lines.append(f"{name}\t{','.join(image_labels(scene))}")
    sentences, index = [], 0
    while len(sentences) < num_sentences:  # five sentences per undrawn scene
        rng = np.random.default_rng([seed, _NOC_TEXT_STREAM, index])
        sentences += scene_captions(sample_scene(rng, cluttered, NOC_SHAPES), rng)
        index += 1
    return {"image_labels": _write_lines(os.path.join(base, "image_labels.txt"), lines),
            "text_corpus": _write_lines(os.path.join(base, "text_corpus.txt"), sentences[:num_sentences])}


def _scene_truth(records, image_size) -> list[dict]:
    truth = []
    for r in records:
        objects = []
        for o in r.scene.objects:
            objects.append({"shape": o.shape, "colour": o.colour, "size": o.size, "row": o.row,
                            "col": o.col, "cell": o.cell, "box": list(object_box(o, image_size)),
                            "phrase": o.phrase, **({"scale": o.scale} if o.scale != 1.0 else {})})
        truth.append({"id": r.id, "file_name": _file_name(r.id), "split": r.split,
                      "objects": objects})
    return truth


def generate(out_dir: str, num_images: int = 2000, num_videos: int = 200, seed: int = 0,
             image_size: int = 128, video_size: int = 64, num_frames: int = 20,
             num_novel_images: int = 0, num_novel_videos: int = 0,
             held_out: HeldOut = DEFAULT_HELD_OUT, cluttered: bool = False,
             region_annotators: int = 0, noc: bool = False) -> dict:
    """Generates the shapes world into `out_dir` in every supported public format.

    Args:
        out_dir: the output directory (created if needed; files are overwritten).
        num_images: how many images; ids are 1..num_images.
        num_videos: how many videos; ids are video0..video{num_videos-1}.
        seed: the seed; the same seed gives byte-identical files.
        image_size: the side of the square images in pixels (at least 24).
        video_size: the side of the square video frames in pixels (at least 24).
        num_frames: frames per video, at least 16.
        num_novel_images: images of the `test_novel` split (ids after the others), each with at
            least one `held_out` composition; when it or `num_novel_videos` is positive, no
            train/val/test image, caption, question or video holds one.
        num_novel_videos: videos of the `test_novel` split, each moving a held-out pair.
        held_out: the held-out compositions (used only when there is a novel split).
        cluttered: the harder images of `sample_scene(cluttered=True)`.
        region_annotators: Visual Genome boxes and phrases per object from simulated workers
            (`annotator_regions`), besides its tight box and phrase; 0: one region per object.
        noc: the Novel Object Captioner's world: objects of `NOC_SHAPES`, `NOC_HELD_OUT` in
            no train/val image (test images are i.i.d.), and the unpaired data of
            `_write_noc_unpaired` (as many labelled images as paired ones, five sentences per
            paired image) under `noc/`.

    Returns:
        The paths written: {"images", "karpathy", "coco_captions": {split: path},
        "coco_instances": {split: path}, "flickr8k": {"tokens", "train", "val", "test"},
        "visual_genome": {"regions", "image_data", "splits"}, "vqa_questions": {split: path},
        "vqa_annotations": {split: path}, "msrvtt": {"info", "categories", "videos"},
        "scenes"}; with `noc`, also "noc": {"image_labels", "text_corpus"}.

    Example:
        >>> paths = generate("/tmp/shapes", num_images=30, num_videos=6, num_frames=16)
        >>> paths["karpathy"]
        '/tmp/shapes/dataset_shapes.json'
    """
    if num_frames < MIN_FRAMES:
        raise ValueError(f"num_frames must be >= {MIN_FRAMES}, got {num_frames}")
    if not 0 <= region_annotators <= MAX_REGION_ANNOTATORS:
        raise ValueError(f"region_annotators must be in [0, {MAX_REGION_ANNOTATORS}], "
                         f"got {region_annotators}")
    if image_size < 24 or video_size < 24:
        raise ValueError(f"image_size and video_size must be >= 24, got {image_size}, {video_size}")
    os.makedirs(out_dir, exist_ok=True)
    novel = num_novel_images > 0 or num_novel_videos > 0
    held_out = held_out if novel else HeldOut()
    records = _make_images(out_dir, num_images, seed, image_size, num_novel_images, held_out, cluttered, noc)
    tokens = _tokenize_all([c for r in records for c in r.captions])
    paths = {"images": os.path.join(out_dir, "images"),
             "karpathy": _write_karpathy(out_dir, records, tokens)}
    paths["coco_captions"], paths["coco_instances"] = _write_coco(out_dir, records, image_size, seed)
    paths["flickr8k"] = _write_flickr8k(out_dir, records)
    paths["visual_genome"] = _write_visual_genome(out_dir, records, image_size, region_annotators, seed)
    paths["vqa_questions"], paths["vqa_annotations"] = _write_vqa(out_dir, records, seed)
    paths["msrvtt"], video_truth = _write_videos(out_dir, num_videos, seed, video_size, num_frames,
                                                 num_novel_videos, held_out)
    _tokenize_all([c for v in video_truth for c in v["captions"]])
    noc_fields = {}
    if noc:
        paths["noc"] = _write_noc_unpaired(out_dir, num_images, CAPTIONS_PER_ITEM * num_images, seed,
                                           image_size, cluttered)
        noc_fields = {"noc": {"shapes": list(NOC_SHAPES), "held_out": list(NOC_HELD_OUT)}}
    paths["scenes"] = _write_json(os.path.join(out_dir, "scenes.json"), {
        "seed": seed, "image_size": image_size, "video_size": video_size,
        "num_frames": num_frames, "fps": FPS, **({"held_out": held_out.to_json()} if novel else {}),
        **({"cluttered": True} if cluttered else {}), **noc_fields,
        "images": _scene_truth(records, image_size), "videos": video_truth})
    return paths


def _summary(paths: dict) -> str:
    with open(paths["visual_genome"]["splits"], encoding="utf-8") as f:
        image_splits = {s: len(ids) for s, ids in json.load(f).items()}
    with open(paths["msrvtt"]["info"], encoding="utf-8") as f:
        video_splits = collections.Counter(v["split"] for v in json.load(f)["videos"])
    lines = [f"images: {sum(image_splits.values())} "
             + " ".join(f"{s}={n}" for s, n in image_splits.items()) + f"  -> {paths['images']}",
             f"videos: {sum(video_splits.values())} "
             + " ".join(f"{s}={n}" for s, n in video_splits.items())
             + f"  -> {paths['msrvtt']['videos']}",
             f"karpathy: {paths['karpathy']}",
             f"coco: {os.path.dirname(paths['coco_captions']['train'])}",
             f"flickr8k: {os.path.dirname(paths['flickr8k']['tokens'])}",
             f"visual_genome: {os.path.dirname(paths['visual_genome']['regions'])}",
             f"vqa: {os.path.dirname(paths['vqa_questions']['train'])}",
             f"msrvtt: {paths['msrvtt']['info']}",
             f"ground truth: {paths['scenes']}"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    from vcaption import cli
    from vcaption.runtime import logs

    parser = cli.make_parser("python -m vcaption.datasets.shapes",
                             "Generate the shapes world in public dataset formats.")
    cli.add_argument(parser, "--output", deprecated=["--out"], required=True, help="output directory")
    cli.add_argument(parser, "--num-images", deprecated=["--images"], type=int, default=2000,
                     help="number of images")
    cli.add_argument(parser, "--num-videos", deprecated=["--videos"], type=int, default=200,
                     help="number of videos")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same files)")
    parser.add_argument("--image-size", type=int, default=128, help="image side in pixels")
    parser.add_argument("--video-size", type=int, default=64, help="video frame side in pixels")
    cli.add_argument(parser, "--num-frames", deprecated=["--frames"], type=int, default=20,
                     help=f"frames per video (>= {MIN_FRAMES})")
    parser.add_argument("--num-novel-images", type=int, default=0,
                        help="images of the test_novel split (held-out compositions; 0: no such split)")
    parser.add_argument("--num-novel-videos", type=int, default=0,
                        help="videos of the test_novel split (moving a held-out colour-shape pair)")
    parser.add_argument("--cluttered", action="store_true",
                        help="harder images: 1-6 objects, varied sizes, overlaps, textured noisy background")
    parser.add_argument("--region-annotators", type=int, default=0,
                        help="Visual Genome boxes and phrases per object from simulated workers "
                             f"(0-{MAX_REGION_ANNOTATORS}; 0: one region per object)")
    parser.add_argument("--noc", action="store_true",
                        help=f"Novel Object Captioner world: {len(NOC_SHAPES)} shapes, {', '.join(NOC_HELD_OUT)} "
                             "in no paired train/val caption; unpaired labelled images and text under noc/")
    args = parser.parse_args(argv)
    logs.configure(args.verbose)
    if args.num_frames < MIN_FRAMES:
        parser.error(f"--num-frames must be >= {MIN_FRAMES}")
    paths = generate(args.output, args.num_images, args.num_videos, args.seed, args.image_size,
                     args.video_size, args.num_frames, args.num_novel_images, args.num_novel_videos,
                     cluttered=args.cluttered, region_annotators=args.region_annotators, noc=args.noc)
    print(_summary(paths))


if __name__ == "__main__":
    main()
