"""Caption text as TensorFlow ops: normalization, tokenization, vocabulary lookup, detokenization.

These functions are the only text path in vcaption. The Beam preprocessing job, the tf.data
pipelines and the exported SavedModels all call them, so a caption is tokenized identically at
ingest, in training and in serving (DESIGN rule 1). They use core TensorFlow ops only (tf.strings,
tf.lookup), so a SavedModel that embeds them runs on the stock TF Serving model server.

Normalization follows Karpathy & Fei-Fei (§4, "Data preprocessing"): lowercase, discard
non-alphanumeric characters, split on whitespace.
"""

from __future__ import annotations

import os
from typing import Iterable, Sequence

import tensorflow as tf

PAD, START, END, UNK = "<pad>", "<start>", "<end>", "<unk>"
RESERVED_TOKENS = (PAD, START, END, UNK)
PAD_ID, START_ID, END_ID, UNK_ID = 0, 1, 2, 3


def normalize(text: tf.Tensor) -> tf.Tensor:
    """Lowercases and discards every character that is not a letter, a digit or a space.

    Discarding (rather than replacing by a space) matches the reference preprocessing of the
    Karpathy splits: "man's" becomes "mans", "black-and-white" becomes "blackandwhite".
    Unicode-aware: "Café" becomes "café". Raises InvalidArgumentError on invalid UTF-8.
    """
    text = tf.strings.lower(tf.convert_to_tensor(text, tf.string), encoding="utf-8")
    text = tf.strings.regex_replace(text, r"\pZ", " ")  # non-ASCII spaces separate words too
    text = tf.strings.regex_replace(text, r"[^\pL\pN\s]", "")
    text = tf.strings.regex_replace(text, r"\s+", " ")
    return tf.strings.strip(text)


def tokenize(text: tf.Tensor) -> tf.RaggedTensor:
    """Normalizes and splits on whitespace: string[...] -> ragged string[..., (tokens)]."""
    return tf.strings.split(normalize(text))


def normalized_caption(text: str) -> str:
    """Python convenience for one string (reports)."""
    return normalized_captions([text])[0]


def normalized_captions(texts: Sequence[str]) -> list[str]:
    """`normalize` of many Python strings in one call: eager ops cost ~0.2 ms per call, which
    made 9,000 references one at a time ~1.6 s per validation and ~15 s per evaluation."""
    if not texts:
        return []
    return [t.decode("utf-8") for t in normalize(tf.constant(list(texts), tf.string)).numpy()]


def normalized_caption_lists(groups: Sequence[Sequence[str]]) -> list[list[str]]:
    """`normalized_captions` of lists of strings (e.g. each image's references), in one call."""
    flat = normalized_captions([caption for group in groups for caption in group])
    lists, start = [], 0
    for group in groups:
        lists.append(flat[start:start + len(group)])
        start += len(group)
    return lists


class Vocabulary(tf.Module):
    """Token <-> id tables; the line number (or list index) of a token is its id.

    The reserved tokens `<pad>`=0, `<start>`=1, `<end>`=2, `<unk>`=3 come first. Built from the
    vocabulary file (`vocab.txt` written by `beam_jobs.preprocess`), both tables are initialized
    from that file, so a SavedModel that tracks this module carries it as an asset and needs
    nothing else at serving time. Built from a token list (a Beam side input), the tables hold
    the list as constants.

    Args:
        path: the vocabulary file, one token per line.
        tokens: the tokens in id order, instead of `path`.

    Example:
        >>> vocab = Vocabulary(tokens=["<pad>", "<start>", "<end>", "<unk>", "red", "circle"])
        >>> vocab.encode(tf.constant(["A red circle!"]), max_length=16)
        <tf.RaggedTensor [[1, 3, 4, 5, 2]]>
        >>> vocab.decode([[1, 3, 4, 5, 2, 0]])
        <tf.Tensor: ... numpy=array([b'<unk> red circle'], dtype=object)>
    """

    def __init__(self, path: str | None = None, tokens: Sequence[str] | None = None):
        super().__init__(name="vocabulary")
        if (path is None) == (tokens is None):
            raise ValueError("give exactly one of `path` and `tokens`")
        if path is not None:
            with tf.io.gfile.GFile(path) as f:
                tokens = f.read().splitlines()
        tokens = list(tokens)
        if tuple(tokens[: len(RESERVED_TOKENS)]) != RESERVED_TOKENS:
            raise ValueError(f"vocabulary {path or 'tokens'} must start with {RESERVED_TOKENS}, "
                             f"got {tokens[:4]}")
        self.path = path
        self.size = len(tokens)
        self._words = tokens
        if path is not None:
            to_id = tf.lookup.TextFileInitializer(
                path, tf.string, tf.lookup.TextFileIndex.WHOLE_LINE,
                tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER)
            to_token = tf.lookup.TextFileInitializer(
                path, tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER,
                tf.string, tf.lookup.TextFileIndex.WHOLE_LINE)
        else:
            ids = tf.range(len(tokens), dtype=tf.int64)
            to_id = tf.lookup.KeyValueTensorInitializer(tf.constant(tokens), ids)
            to_token = tf.lookup.KeyValueTensorInitializer(ids, tf.constant(tokens))
        self.token_to_id = tf.lookup.StaticHashTable(to_id, default_value=UNK_ID)
        self.id_to_token = tf.lookup.StaticHashTable(to_token, default_value=UNK)

    @property
    def words(self) -> list[str]:
        return list(self._words)

    @staticmethod
    def write(words: Iterable[str], path: str) -> str:
        """Writes reserved tokens then `words` (in the given order) to `path`; returns the path."""
        words = [w for w in words if w not in RESERVED_TOKENS]
        tf.io.gfile.makedirs(os.path.dirname(path) or ".")
        with tf.io.gfile.GFile(path, "w") as f:
            f.write("\n".join([*RESERVED_TOKENS, *words]) + "\n")
        return path

    def lookup(self, tokens: tf.Tensor | tf.RaggedTensor) -> tf.Tensor | tf.RaggedTensor:
        """Token strings -> int64 ids; out-of-vocabulary tokens map to `<unk>`."""
        if isinstance(tokens, tf.RaggedTensor):
            return tokens.with_flat_values(self.token_to_id.lookup(tokens.flat_values))
        return self.token_to_id.lookup(tokens)

    def encode(self, text: tf.Tensor, max_length: int) -> tf.RaggedTensor:
        """string[batch] -> ragged int64[batch, (<start> + at most max_length words + <end>)]."""
        ids = self.lookup(tokenize(text))[:, :max_length]
        batch = tf.shape(ids.row_lengths(), out_type=tf.int64)
        start = tf.fill(tf.concat([batch, [1]], 0), tf.constant(START_ID, tf.int64))
        end = tf.fill(tf.concat([batch, [1]], 0), tf.constant(END_ID, tf.int64))
        return tf.concat([start, ids, end], axis=1)

    def decode(self, ids: tf.Tensor) -> tf.Tensor:
        """int[batch, length] (padded or ragged) -> string[batch].

        Stops at the first `<end>`, drops `<pad>` and `<start>`, joins words with single spaces.
        """
        if isinstance(ids, tf.RaggedTensor):
            ids = ids.to_tensor(default_value=PAD_ID)
        ids = tf.cast(ids, tf.int64)
        # Everything from the first <end> onwards is padding for our purposes.
        after_end = tf.cumsum(tf.cast(tf.equal(ids, END_ID), tf.int32), axis=-1) > 0
        keep = tf.logical_not(after_end) & (ids != PAD_ID) & (ids != START_ID)
        words = tf.ragged.boolean_mask(self.id_to_token.lookup(ids), keep)
        return tf.strings.reduce_join(words, axis=-1, separator=" ")


# Traced once: eager, the dozen string ops of `tokenize` cost ~1 ms per call, which made them most
# of `beam_jobs.preprocess`'s time (one call per example).
_tokenize_batch = tf.function(tokenize, input_signature=[tf.TensorSpec([None], tf.string)])


def count_tokens(captions: Sequence[str]) -> list[list[str]]:
    """Tokenizes Python strings with the TF path; returns Python lists of str tokens."""
    tokens = _tokenize_batch(tf.constant(list(captions), tf.string)).to_list()
    return [[t.decode("utf-8") for t in row] for row in tokens]


def has_invalid_utf8(text: str) -> bool:
    """True if a string read with errors='surrogateescape' held bytes that are not UTF-8."""
    try:
        text.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True
