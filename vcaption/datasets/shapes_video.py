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
                                      _article, _odd_extent, _redraw, _write_json, _write_lines,
                                      assign_splits, blank_canvas, draw_shape)

ACTIVITIES = ("moving left", "moving right", "moving up", "moving down", "growing", "shrinking")



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


@dataclasses.dataclass(frozen=True)
class Video:
    """A shapes-world video: one object interpolated from `start` to `end`, and a static distractor.

    Args:
        activity: one of `ACTIVITIES`.
        start: the moving object at the first frame.
        end: the moving object at the last frame (same shape and colour).
        distractor: an object that stays still, in a place the moving object never covers; or None.

    Example:
        >>> video = sample_video(np.random.default_rng(0))
        >>> frames = render_video(video, video_size=64, num_frames=20)  # uint8 [20, 64, 64, 3]
    """

    activity: str
    start: VideoObject
    end: VideoObject
    distractor: VideoObject | None = None

    def at(self, t: float) -> VideoObject:
        """The moving object at time t in [0, 1]."""
        lerp = lambda a, b: a + (b - a) * t  # noqa: E731
        return dataclasses.replace(self.start, x=lerp(self.start.x, self.end.x),
                                   y=lerp(self.start.y, self.end.y),
                                   size=lerp(self.start.size, self.end.size))


def sample_video(rng: np.random.Generator) -> Video:
    """Draws an activity, a moving object and (half the time) a static distractor.

    Movers travel 0.6 of the frame side; growing/shrinking objects change size 3.3x. Movers keep
    to one half of the frame (a "lane") and the distractor sits in the other half; growing
    objects stay in the middle and the distractor in a corner; so the two never overlap.

    Args:
        rng: the random stream.

    Example:
        >>> sample_video(np.random.default_rng(0)).activity
        'growing'
    """
    activity = ACTIVITIES[int(rng.integers(len(ACTIVITIES)))]
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    colours = list(COLOURS)
    colour = colours.pop(int(rng.integers(len(colours))))
    jitter = lambda: round(float(rng.uniform(-0.04, 0.04)), 3)  # noqa: E731
    lane = int(rng.integers(2))
    lane_centre, other_lane = (0.28, 0.72) if lane == 0 else (0.72, 0.28)
    travel = {"moving left": (0.8, 0.2), "moving right": (0.2, 0.8),
              "moving up": (0.8, 0.2), "moving down": (0.2, 0.8)}
    if activity in ("moving left", "moving right"):
        y = lane_centre + jitter()
        (x0, x1), (y0, y1), (s0, s1) = travel[activity], (y, y), (0.22, 0.22)
        spot = (round(float(rng.uniform(0.2, 0.8)), 3), other_lane + jitter())
    elif activity in ("moving up", "moving down"):
        x = lane_centre + jitter()
        (x0, x1), (y0, y1), (s0, s1) = (x, x), travel[activity], (0.22, 0.22)
        spot = (other_lane + jitter(), round(float(rng.uniform(0.2, 0.8)), 3))
    else:
        x, y = 0.5 + jitter(), 0.5 + jitter()
        (x0, x1), (y0, y1) = (x, x), (y, y)
        s0, s1 = (0.15, 0.5) if activity == "growing" else (0.5, 0.15)
        corner = int(rng.integers(4))
        spot = (0.12 if corner % 2 == 0 else 0.88, 0.12 if corner < 2 else 0.88)
    distractor = None
    if rng.random() < 0.5:
        distractor = VideoObject(SHAPES[int(rng.integers(len(SHAPES)))],
                                 colours[int(rng.integers(len(colours)))], spot[0], spot[1],
                                 0.18 if activity.startswith("moving") else 0.14)
    return Video(activity, VideoObject(shape, colour, x0, y0, s0),
                 VideoObject(shape, colour, x1, y1, s1), distractor)


def video_boxes(video: Video, num_frames: int, video_size: int) -> list[tuple[int, int, int, int]]:
    """The moving object's box [x, y, w, h] in each frame."""
    return [video.at(t / (num_frames - 1)).box(video_size) for t in range(num_frames)]


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
    frames = np.empty((num_frames, video_size, video_size, 3), np.uint8)
    for t, box in enumerate(video_boxes(video, num_frames, video_size)):
        frame = blank_canvas(video_size)
        if video.distractor is not None:
            x, y, side, _ = video.distractor.box(video_size)
            draw_shape(frame, video.distractor.shape, COLOURS[video.distractor.colour], x, y,
                       (side - 1) // 2)
        draw_shape(frame, video.start.shape, COLOURS[video.start.colour], box[0], box[1],
                   (box[2] - 1) // 2)
        frames[t] = frame
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
    "growing": ("{a} grows bigger", "{a} is growing", "{the} gets larger and larger",
                "{a} growing in size", "a small {o} becomes large", "{the} expands"),
    "shrinking": ("{a} shrinks", "{a} is shrinking", "{the} gets smaller and smaller",
                  "{a} shrinking in size", "a large {o} becomes small", "{the} contracts"),
}
_VIDEO_VERBS = {"moving left": "moves left", "moving right": "moves right", "moving up": "moves up",
                "moving down": "moves down", "growing": "grows", "shrinking": "shrinks"}


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
                        f"{_article(d.colour + ' ' + d.shape)} stays still")
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
                       "split": MSRVTT_SPLITS[splits[n]], "id": n})
        captions = video_captions(video, rng)
        for caption in captions:
            sentences.append({"caption": caption, "video_id": video_id, "sen_id": len(sentences)})
        truth.append({"id": n, "video_id": video_id, "split": splits[n],
                      "activity": video.activity, "category": ACTIVITIES.index(video.activity),
                      "object": {"shape": video.start.shape, "colour": video.start.colour},
                      "boxes": [list(b) for b in video_boxes(video, num_frames, video_size)],
                      "distractor": None if video.distractor is None else {
                          "shape": video.distractor.shape, "colour": video.distractor.colour,
                          "box": list(video.distractor.box(video_size))},
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


