"""The shapes world's videos: sampling, drawing, describing and writing them as MSR-VTT.

Split from `vcaption.datasets.shapes` (which re-exports every public name here, so
`shapes.sample_video` still works) because the videos are a world of their own: they share the
images' palette, shapes and drawing, never their random streams.
"""

from __future__ import annotations

import dataclasses
import os

import cv2
import numpy as np

from vcaption.datasets.shapes import (_INFO_DATE, _VIDEO_STREAM, CAPTIONS_PER_ITEM, COLOURS, FPS,
                                      MIN_FRAMES, MSRVTT_SPLITS, SHAPE_SYNONYMS, SHAPES, HeldOut,
                                      _article, _odd_extent, add_noise, _redraw, _write_json, _write_lines,
                                      assign_splits, blank_canvas, draw_shape)

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
# Writing MSR-VTT


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


