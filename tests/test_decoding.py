"""Tests for vcaption.decoding (in-graph greedy / beam / sampling) and its Python-loop reference.

The step functions are tiny lookup tables: logits = table[previous token, position] (+ image · W),
so every probability can be recomputed in NumPy and beam search checked against enumeration.
"""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from vcaption import decoding
from vcaption.decoding_reference import python_loop_beam_search

END = decoding.END_ID
START = decoding.START_ID


class TableModel:
    """logits[b] = table[prev_token, min(pos, P - 1)] + image[b] @ w; state = {pos, image}."""

    def __init__(self, vocab_size=5, positions=6, image_dim=1, scale=1.5, seed=0, table=None,
                 pos_dtype=tf.int32):
        rng = np.random.default_rng(seed)
        if table is None:
            table = rng.normal(size=[vocab_size, positions, vocab_size]) * scale
        self.table = np.asarray(table, np.float32)
        self.vocab_size = self.table.shape[-1]
        self.w = (rng.normal(size=[image_dim, self.vocab_size]) * scale).astype(np.float32)
        self.image_dim = image_dim
        self.pos_dtype = pos_dtype

    def initial_state(self, images):
        images = tf.convert_to_tensor(images, tf.float32)  # [batch, image_dim]
        batch = tf.shape(images)[0]
        return {"pos": tf.zeros([batch], self.pos_dtype), "image": images}

    def step(self, tokens, state):
        pos = tf.minimum(tf.cast(state["pos"], tf.int32), self.table.shape[1] - 1)
        logits = tf.gather_nd(tf.constant(self.table), tf.stack([tokens, pos], axis=-1))
        logits += tf.matmul(state["image"], tf.constant(self.w))  # [batch, V]
        return logits, {"pos": state["pos"] + 1, "image": state["image"]}

    def log_softmax(self, prev, pos, image):
        pos = min(pos, self.table.shape[1] - 1)
        logits = self.table[prev, pos].astype(np.float64) + image.astype(np.float64) @ self.w
        return logits - np.logaddexp.reduce(logits)

    def log_prob(self, seq, image):
        """log P(seq | image) by teacher forcing; seq excludes <start>."""
        prev, total = START, 0.0
        for pos, token in enumerate(seq):
            total += self.log_softmax(prev, pos, image)[token]
            prev = token
        return total


def images(batch, dim, seed=1):
    return np.random.default_rng(seed).normal(size=[batch, dim]).astype(np.float32)


def enumerate_hypotheses(model, image, max_length, alpha):
    """All finished sequences (ending in <end> at <= max_length) and all truncated length-L ones.

    Scored as documented by `beam_search`: log P / ((5 + |Y|) / 6) ** alpha, |Y| = tokens incl.
    <end>; returns [(score, log_prob, seq)] sorted best first.
    """
    out = []
    vocab = range(model.vocab_size)

    def expand(prefix, log_prob):
        pos = len(prefix)
        prev = prefix[-1] if prefix else START
        lsm = model.log_softmax(prev, pos, image)
        for token in vocab:
            seq, lp = prefix + [token], log_prob + lsm[token]
            if token == END or len(seq) == max_length:
                out.append((lp / ((5.0 + len(seq)) / 6.0) ** alpha, lp, seq))
            else:
                expand(seq, lp)

    expand([], 0.0)
    return sorted(out, key=lambda h: -h[0])


def as_list(ids_row, length):
    return [int(t) for t in ids_row[:length]]


def check_well_formed(result, max_length):
    ids, lengths = result.ids.numpy(), result.lengths.numpy()
    assert ids.shape[-1] == max_length
    for b, n in itertools.product(range(ids.shape[0]), range(ids.shape[1])):
        row, length = ids[b, n], lengths[b, n]
        assert np.all(row[length:] == 0), row  # <pad> after <end>
        assert np.all(row[:max(length - 1, 0)] != END), row  # nothing follows <end>
        if 0 < length < max_length:
            assert row[length - 1] == END, row


@pytest.mark.parametrize("alpha", [0.0, 0.7])
def test_beam_search_equals_brute_force(alpha):
    # V = 5, L = 4: the 2k kept extensions cover all V * (V-1)^3 = 320 candidates of a step.
    model = TableModel(vocab_size=5, positions=4, image_dim=2, seed=3)
    image = images(1, 2)
    max_length, beam_size, n_best = 4, 160, 8
    result = decoding.beam_search(model.step, model.initial_state(image), model.vocab_size,
                                  beam_size, max_length, n_best=n_best, alpha=alpha)
    expected = enumerate_hypotheses(model, image[0], max_length, alpha)[:n_best]
    check_well_formed(result, max_length)
    got = [as_list(result.ids[0, n].numpy(), result.lengths[0, n]) for n in range(n_best)]
    assert got == [seq for _, _, seq in expected]
    np.testing.assert_allclose(result.scores[0], [s for s, _, _ in expected], rtol=1e-5)
    np.testing.assert_allclose(result.log_probs[0], [lp for _, lp, _ in expected], rtol=1e-5)
    assert list(result.lengths[0].numpy()) == [len(seq) for _, _, seq in expected]


def test_length_normalisation_hand_computed():
    # Position-only probabilities (prev token ignored), vocab (pad, start, end, a), max_length 2:
    #   t=0: a .5, end .3, pad .1, start .1      t=1: end .5, a .3, pad .1, start .1
    # alpha=0: [end] log .3 = -1.204 beats [a end] log .25 = -1.386.
    # alpha=1: [end] -1.204 / ((5+1)/6) = -1.204; [a end] -1.386 / ((5+2)/6) = -1.188 wins.
    step0 = np.log([0.1, 0.1, 0.3, 0.5])
    step1 = np.log([0.1, 0.1, 0.5, 0.3])
    table = np.tile(np.stack([step0, step1])[None], [4, 1, 1])  # [prev, pos, V]
    model = TableModel(table=table)
    state = model.initial_state(np.zeros([1, 1], np.float32))
    for alpha, best in [(0.0, [END]), (1.0, [3, END])]:
        result = decoding.beam_search(model.step, state, 4, beam_size=4, max_length=2, n_best=2,
                                      alpha=alpha)
        assert as_list(result.ids[0, 0].numpy(), result.lengths[0, 0]) == best
    np.testing.assert_allclose(result.scores[0], [np.log(0.25) / (7 / 6), np.log(0.3)], rtol=1e-5)
    np.testing.assert_allclose(result.log_probs[0], [np.log(0.25), np.log(0.3)], rtol=1e-5)
    assert list(result.lengths[0].numpy()) == [2, 1]
    assert list(result.ids[0, 1].numpy()) == [END, 0]


def test_nbest_early_stop_fills_all_slots():
    # <end> first has p ~ .9: the official early stop would end the search after one step with one
    # real hypothesis and fillers; every requested slot must hold a real, distinct hypothesis.
    table = np.random.default_rng(5).normal(size=[5, 4, 5])
    table[:, 0, END] = 4.0
    model = TableModel(table=table)
    state = model.initial_state(np.zeros([1, 1], np.float32))
    result = decoding.beam_search(model.step, state, 5, beam_size=3, max_length=4, n_best=3)
    assert np.all(np.isfinite(result.scores.numpy()))
    assert np.all(np.diff(result.scores[0].numpy()) <= 0)
    expected = enumerate_hypotheses(model, np.zeros([1]), 4, 0.0)[:3]
    got = [as_list(result.ids[0, n].numpy(), result.lengths[0, n]) for n in range(3)]
    assert got == [seq for _, _, seq in expected]


def test_width_one_equals_greedy():
    # <end> is unlikely except at position 3 where it dominates: greedy's path is the best one.
    table = np.random.default_rng(7).normal(size=[6, 5, 6])
    table[:, :, END] = -10.0
    table[:, 3, END] = 6.0
    model = TableModel(table=table)
    state = model.initial_state(np.zeros([2, 1], np.float32))
    beam = decoding.beam_search(model.step, state, 6, beam_size=1, max_length=5)
    greedy = decoding.greedy(model.step, state, max_length=5)
    np.testing.assert_array_equal(beam.ids, greedy.ids)
    np.testing.assert_array_equal(beam.lengths, greedy.lengths)
    np.testing.assert_allclose(beam.scores, greedy.scores, rtol=1e-6)
    assert list(greedy.lengths.numpy()[:, 0]) == [4, 4]
    # In general width 1 is not greedy: an earlier <end> stays in the finished list and can win.
    # It is never worse than greedy, whose path is always among its candidates.
    model = TableModel(vocab_size=6, positions=5, seed=11)
    beam = decoding.beam_search(model.step, state, 6, beam_size=1, max_length=5)
    greedy = decoding.greedy(model.step, state, max_length=5)
    assert np.all(beam.scores.numpy() >= greedy.scores.numpy() - 1e-5)


def test_greedy_matches_teacher_forced_log_prob():
    model = TableModel(vocab_size=6, positions=5, image_dim=3, seed=2)
    image = images(3, 3)
    result = decoding.greedy(model.step, model.initial_state(image), max_length=5)
    check_well_formed(result, 5)
    for b in range(3):
        seq = as_list(result.ids[b, 0].numpy(), result.lengths[b, 0])
        np.testing.assert_allclose(result.log_probs[b, 0], model.log_prob(seq, image[b]),
                                   rtol=1e-5)
        prev = START  # every token is the argmax given the prefix
        for pos, token in enumerate(seq):
            assert token == np.argmax(model.log_softmax(prev, pos, image[b]))
            prev = token


def test_batched_equals_per_example():
    model = TableModel(vocab_size=6, positions=6, image_dim=3, seed=4, pos_dtype=tf.int64)
    image = images(3, 3, seed=9)
    kwargs = dict(vocab_size=6, beam_size=3, max_length=6, n_best=2, alpha=0.7)
    batched = decoding.beam_search(model.step, model.initial_state(image), **kwargs)
    batched_greedy = decoding.greedy(model.step, model.initial_state(image), max_length=6)
    check_well_formed(batched, 6)
    for b in range(3):
        single = decoding.beam_search(model.step, model.initial_state(image[b:b + 1]), **kwargs)
        np.testing.assert_array_equal(batched.ids[b], single.ids[0])
        np.testing.assert_allclose(batched.scores[b], single.scores[0], rtol=1e-5)
        single = decoding.greedy(model.step, model.initial_state(image[b:b + 1]), max_length=6)
        np.testing.assert_array_equal(batched_greedy.ids[b], single.ids[0])


def test_python_loop_reference_matches_beam_search():
    model = TableModel(vocab_size=6, positions=6, image_dim=3, seed=8)
    image = images(2, 3, seed=2)
    kwargs = dict(vocab_size=6, beam_size=3, max_length=6, n_best=3, alpha=0.7)
    state = model.initial_state(image)
    expected = decoding.beam_search(model.step, state, **kwargs)
    got = python_loop_beam_search(model.step, state, **kwargs)
    np.testing.assert_array_equal(got.ids, expected.ids)
    np.testing.assert_array_equal(got.lengths, expected.lengths)
    np.testing.assert_allclose(got.scores, expected.scores, rtol=1e-5)
    np.testing.assert_allclose(got.log_probs, expected.log_probs, rtol=1e-5)


def test_sampling():
    model = TableModel(vocab_size=6, positions=5, image_dim=2, seed=6)
    image = images(2, 2, seed=3)
    state = model.initial_state(image)
    kwargs = dict(max_length=5, num_samples=32)
    first = decoding.sample(model.step, state, seed=(1, 2), n_best=32, **kwargs)
    again = decoding.sample(model.step, state, seed=(1, 2), n_best=32, **kwargs)
    other = decoding.sample(model.step, state, seed=(3, 4), n_best=32, **kwargs)
    np.testing.assert_array_equal(first.ids, again.ids)  # deterministic given the seed
    assert not np.array_equal(first.ids.numpy(), other.ids.numpy())
    check_well_formed(first, 5)

    # All distinct samples come back sorted by their untempered log-likelihood.
    for b in range(2):
        filled = first.lengths[b].numpy() > 0
        seqs = [as_list(first.ids[b, n].numpy(), first.lengths[b, n])
                for n in range(32) if filled[n]]
        assert len({tuple(s) for s in seqs}) == len(seqs) > 1
        recomputed = [model.log_prob(s, image[b]) for s in seqs]
        np.testing.assert_allclose(first.log_probs[b].numpy()[filled], recomputed, rtol=1e-5)
        assert np.all(np.diff(recomputed) <= 1e-6)
        assert np.all(first.scores[b].numpy()[~filled] == -np.inf)
    best = decoding.sample(model.step, state, seed=(1, 2), n_best=1, **kwargs)
    np.testing.assert_array_equal(best.ids[:, 0], first.ids[:, 0])  # best-of-N = argmax

    # Temperature: sharper distribution (lower T) -> fewer distinct, more likely samples.
    def spread(temperature):
        r = decoding.sample(model.step, state, seed=(5, 5), n_best=32, temperature=temperature,
                            **kwargs)
        filled = r.lengths.numpy() > 0
        return filled.sum(), r.log_probs.numpy()[filled].mean()

    (n_flat, mean_flat), (n_sharp, mean_sharp) = spread(2.0), spread(1 / 3)
    assert n_flat > n_sharp and mean_flat < mean_sharp

    # A very peaked distribution samples the greedy sequence.
    peaked = TableModel(table=model.table * 100.0)
    zero = peaked.initial_state(np.zeros([2, 1], np.float32))
    sampled = decoding.sample(peaked.step, zero, seed=(0, 7), **kwargs)
    np.testing.assert_array_equal(sampled.ids, decoding.greedy(peaked.step, zero, 5).ids)


def test_temperature_divides_the_logits():
    """One convention, the true temperature: sampling at T from a model draws exactly what sampling
    at T = 1 draws from the same model with its logits divided by T (LRCN's factor 1 / T)."""
    model = TableModel(vocab_size=6, positions=5, image_dim=2, seed=9)
    cooled = TableModel(table=model.table * 2.0, image_dim=2)  # logits / 0.5; zero images: w unused
    zero = model.initial_state(np.zeros([3, 2], np.float32))
    kwargs = dict(max_length=5, num_samples=16, seed=(4, 2), n_best=16)
    at_half = decoding.sample(model.step, zero, temperature=0.5, **kwargs)
    scaled = decoding.sample(cooled.step, cooled.initial_state(np.zeros([3, 2], np.float32)), **kwargs)
    # The same draws; only their order differs, ranked by each model's own untempered likelihood.
    for b in range(3):
        assert sorted(map(tuple, at_half.ids[b].numpy())) == sorted(map(tuple, scaled.ids[b].numpy()))
    assert decoding.lrcn_temperature(1.5) == pytest.approx(2 / 3)  # LRCN's best setting, §5
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="temperature must be > 0"):
            decoding.sample(model.step, zero, temperature=bad, **kwargs)


class Captioner(tf.Module):
    """What an export wraps: image features in, N-best ids and scores out, decoding in-graph."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.table = tf.Variable(model.table)  # tracked so the SavedModel carries it

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
    def beam(self, image):
        def step(tokens, state):  # dynamic batch: the official search runs unpadded
            pos = tf.minimum(state["pos"], self.table.shape[1] - 1)
            logits = tf.gather_nd(self.table, tf.stack([tokens, pos], axis=-1))
            logits += tf.matmul(state["image"], tf.constant(self.model.w))
            return logits, {"pos": state["pos"] + 1, "image": state["image"]}

        state = self.model.initial_state(image)
        out = decoding.beam_search(step, state, 6, beam_size=3, max_length=5, n_best=2, alpha=0.7)
        greedy = decoding.greedy(step, state, max_length=5)
        sampled = decoding.sample(step, state, max_length=5, num_samples=8, seed=(1, 1))
        return {"ids": out.ids, "scores": out.scores, "log_probs": out.log_probs,
                "lengths": out.lengths, "greedy_ids": greedy.ids, "sample_ids": sampled.ids}


def test_graph_mode_and_saved_model_round_trip(tmp_path):
    model = TableModel(vocab_size=6, positions=5, image_dim=3, seed=12)
    image = images(2, 3, seed=4)
    module = Captioner(model)
    in_graph = module.beam(tf.constant(image))
    state = model.initial_state(image)  # eager, static batch: padded official search
    eager = decoding.beam_search(model.step, state, 6, beam_size=3, max_length=5, n_best=2,
                                 alpha=0.7)
    np.testing.assert_array_equal(in_graph["ids"], eager.ids)
    np.testing.assert_allclose(in_graph["scores"], eager.scores, rtol=1e-5)
    np.testing.assert_array_equal(in_graph["greedy_ids"],
                                  decoding.greedy(model.step, state, 5).ids)
    np.testing.assert_array_equal(
        in_graph["sample_ids"],
        decoding.sample(model.step, state, max_length=5, num_samples=8, seed=(1, 1)).ids)

    tf.saved_model.save(module, str(tmp_path / "captioner"))
    loaded = tf.saved_model.load(str(tmp_path / "captioner"))
    restored = loaded.beam(tf.constant(image))
    for key, value in in_graph.items():
        np.testing.assert_array_equal(restored[key], value)
