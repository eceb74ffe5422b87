"""Caption a few images with an export, or answer a question about them: no server, no Beam job.

    python -m vcaption.caption --model saved_models/lrcn_2f/1 photo.jpg [more.jpg ...]
    python -m vcaption.caption --model saved_models/vqa_lstm_cnn/1 --question "what color is it?" photo.jpg

prints one JSON line per image, in the order given:

    {"file": "photo.jpg", "captions": ["a red circle", ...], "scores": [-1.2, ...]}     a captioner
    {"file": "photo.jpg", "question": "...", "answers": ["red", ...], "probabilities": [0.9, ...]}  VQA
    {"file": "notes.txt", "error": "cannot be decoded: not a JPEG, PNG, GIF or BMP image ..."}

The N best captions come best first with the export's ranking scores (`vcaption.captioning.export`:
log P(caption | image), length-normalised when the export's alpha > 0); slots its beam search
could not fill are left out. A VQA export gives its top-k answers with their probabilities.

The export is loaded with `tf.saved_model.load` (TensorFlow only: the same SavedModel TF Serving
serves) and its `serving_default` signature called on the files' bytes, `--batch-size` at a time. A
file that cannot be read or decoded gets an error line and the others are still answered: when a
batch fails, its images are run one at a time so only the bad one is reported. The exit status is
1 if any file failed, 2 for a usage error (an export that is neither a captioner nor a VQA model,
`--question` for a captioner, a VQA export without it). For thousands of images use
`beam_jobs.batch_caption`; for a running model server, `vcaption.serving.client`.
"""

from __future__ import annotations

import json
import math
import os
import sys
from typing import Iterator, Sequence

from vcaption import cli
from vcaption.runtime import logs

SIGNATURE = "serving_default"
CAPTIONER = ({"image_bytes"}, {"captions", "scores"})
VQA = ({"image_bytes", "question"}, {"answers", "probabilities"})


class UsageError(ValueError):
    """The command cannot run as asked (exit status 2): the message says why."""


def n_best_lists(captions, scores) -> list[dict]:
    """Signature outputs (string[batch, N], float[batch, N]) -> per image {"captions", "scores"}.

    Slots the beam search could not fill (caption "", score -inf) are dropped: they are not
    captions, and -inf is not JSON.
    """
    out = []
    for row_captions, row_scores in zip(captions, scores):
        kept = [(c.decode("utf-8"), float(s)) for c, s in zip(row_captions, row_scores) if math.isfinite(s)]
        out.append({"captions": [c for c, _ in kept], "scores": [s for _, s in kept]})
    return out


class ExportedModel:
    """An exported captioner or VQA model, called on encoded images.

    Args:
        path: a SavedModel version directory (`saved_models/NAME/VERSION`), local or gs://.
        question: the question to ask about every image (VQA exports only, which need one).

    Raises:
        UsageError: naming the export, when it is not a SavedModel, its `serving_default` is
            neither a captioner's nor a VQA model's, or the question does not fit the export.

    Example:
        >>> model = ExportedModel("saved_models/lrcn_2f/1")
        >>> model.predict([open("photo.jpg", "rb").read()])[0]["captions"][0]
        'a red circle on the left'
    """

    def __init__(self, path: str, question: str | None = None):
        import tensorflow as tf

        if not tf.io.gfile.exists(os.path.join(path, "saved_model.pb")):
            raise UsageError(f"--model {path!r} is not a SavedModel directory (no saved_model.pb); pass a "
                             "version directory such as saved_models/lrcn_2f/1")
        # The loaded object must stay referenced: its signatures only hold weak references to it.
        self._loaded = tf.saved_model.load(path)
        if SIGNATURE not in self._loaded.signatures:
            raise UsageError(f"export {path!r} has no {SIGNATURE} signature "
                             f"(it has {sorted(self._loaded.signatures)})")
        self._serve = self._loaded.signatures[SIGNATURE]
        inputs = set(self._serve.structured_input_signature[1])
        outputs = set(self._serve.structured_outputs)
        self.is_vqa = (inputs, outputs & VQA[1]) == VQA
        if not self.is_vqa and (inputs, outputs & CAPTIONER[1]) != CAPTIONER:
            raise UsageError(
                f"export {path!r}: {SIGNATURE} takes {sorted(inputs)} and returns {sorted(outputs)}; this "
                "command needs a captioner (image_bytes -> captions, scores) or a VQA model (image_bytes, "
                "question -> answers, probabilities); a features-only or video export cannot take image files")
        if self.is_vqa and not question:
            raise UsageError(f"export {path!r} answers questions: pass --question \"...\"")
        if not self.is_vqa and question:
            raise UsageError(f"export {path!r} is a captioner: --question needs a VQA export")
        self.question = question

    def predict(self, encoded: Sequence[bytes]) -> list[dict]:
        """One result per encoded image; raises tf.errors.OpError when any image is refused."""
        import tensorflow as tf

        images = tf.constant(list(encoded), tf.string)
        if not self.is_vqa:
            out = self._serve(image_bytes=images)
            return n_best_lists(out["captions"].numpy(), out["scores"].numpy())
        out = self._serve(image_bytes=images, question=tf.constant([self.question] * len(encoded)))
        return [{"question": self.question, "answers": [a.decode("utf-8") for a in answers],
                 "probabilities": [float(p) for p in probabilities]}
                for answers, probabilities in zip(out["answers"].numpy(), out["probabilities"].numpy())]

    def predict_each(self, encoded: Sequence[bytes]) -> list[dict]:
        """`predict`, with a failed batch retried one image at a time: {"error": ...} for the images
        the model refuses alone (not an image, corrupt, over its pixel limit)."""
        import tensorflow as tf

        from vcaption.ingest import error_message

        try:
            return self.predict(encoded)
        except tf.errors.OpError:
            pass
        results = []
        for one in encoded:
            try:
                results.extend(self.predict([one]))
            except tf.errors.OpError as error:
                results.append({"error": f"cannot be decoded: {error_message(error)}"})
        return results


def read_file(path: str) -> bytes | str:
    """The file's bytes, or a message saying why it cannot be read."""
    import tensorflow as tf

    from vcaption.ingest import error_message, read_media, read_problem

    try:
        return read_media(path)
    except (tf.errors.OpError, OSError, ValueError) as error:
        return f"{read_problem(path)[1]}: {error_message(error)}"


def caption_files(model: ExportedModel, paths: Sequence[str], batch_size: int) -> Iterator[dict]:
    """One result per path, in order: the model's answer, or {"error": ...}."""
    for start in range(0, len(paths), batch_size):
        names = paths[start:start + batch_size]
        contents = [read_file(name) for name in names]
        readable = [data for data in contents if isinstance(data, bytes)]
        answers = iter(model.predict_each(readable) if readable else [])
        for name, data in zip(names, contents):
            yield {"file": name, **(next(answers) if isinstance(data, bytes) else {"error": data})}


def build_parser():
    parser = cli.make_parser("python -m vcaption.caption", __doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True,
                        help="SavedModel version directory of a captioner or VQA export (saved_models/NAME/N)")
    parser.add_argument("--question", default=None, help="the question to ask about every image (VQA exports)")
    parser.add_argument("--batch-size", type=int, default=16, help="images per call of the model")
    parser.add_argument("files", nargs="+", help="image files (JPEG, PNG, GIF, BMP), local or gs://")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.batch_size < 1:
        parser.error("--batch-size must be >= 1")
    logs.configure(args.verbose)
    try:
        model = ExportedModel(args.model, args.question)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    failed = 0
    for line in caption_files(model, args.files, args.batch_size):
        if "error" in line:
            failed += 1
            print(f"error: {line['file']}: {line['error']}", file=sys.stderr)
        print(json.dumps(line, ensure_ascii=False), flush=True)
    if failed:
        print(f"{failed} of {len(args.files)} files failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
