"""Plain-Python beam search (the im2txt approach), the baseline for benchmarking `decoding.py`.

im2txt's `CaptionGenerator.beam_search` runs a Python loop that calls the model's step once per time
step in eager mode and keeps the hypotheses in Python heaps. This module does the same — one
batched `step_fn` call per time step over all [batch * beam_size] rows, hypotheses in Python lists,
state rows re-gathered with `tf.gather` — but with *exactly* the semantics of
`vcaption.decoding.beam_search`, so a benchmark compares like with like:

  * each step considers the 2·k most probable extensions of the alive beams; those ending in <end>
    go to the finished list (top k by score, never extended), the k best others stay alive;
  * score(Y) = log P(Y) / lp(Y), lp(Y) = ((5 + |Y|) / 6) ** alpha, |Y| = generated tokens
    including <end>; alive beams reaching max_length are truncated hypotheses with |Y| = max_length;
  * an example stops early once its k finished slots are full and the worst of them beats
    best_alive_log_prob / lp(max_length).
"""

import numpy as np
import tensorflow as tf

from vcaption.decoding import DecodeResult, END_ID, START_ID, tile_state


def _lp(length, alpha):
    return ((5.0 + length) / 6.0) ** alpha


def python_loop_beam_search(step_fn, initial_state, vocab_size, beam_size, max_length, n_best=1,
                            alpha=0.0, start_id=START_ID, end_id=END_ID):
    """Eager, Python-loop beam search with the semantics of `vcaption.decoding.beam_search`.

    Args:
      step_fn: `(token_ids int32 [rows], state) -> (logits [rows, vocab], state)`, called eagerly.
      initial_state: nested dict, every leaf [batch, ...].
      vocab_size: V.
      beam_size: k.
      max_length: maximum number of generated tokens (<end> included).
      n_best: hypotheses returned per example (<= k).
      alpha: length-normalisation exponent (>= 0).
      start_id: token fed at t = 0.
      end_id: token that finishes a hypothesis.

    Returns:
      `DecodeResult` of numpy arrays: ids [batch, n_best, max_length] int32, scores, log_probs
      [batch, n_best] float32, lengths [batch, n_best] int32 (same conventions as `decoding.py`).
    """
    if not 1 <= n_best <= beam_size:
        raise ValueError("need 1 <= n_best <= beam_size")
    k = beam_size
    batch_size = int(tf.nest.flatten(initial_state)[0].shape[0])
    state = tile_state(initial_state, k)  # leaves [batch * k, ...]; row b * k + j = beam j of b
    tokens = np.full([batch_size * k], start_id, np.int32)
    # alive[b]: list of (log_prob, token list), best first; rows beyond len(alive[b]) are dummies
    # that keep the step batch static and are ignored.
    alive = [[(0.0, [])] for _ in range(batch_size)]
    finished = [[] for _ in range(batch_size)]  # (score, log_prob, token list), best first
    done = [False] * batch_size
    steps = 0
    while steps < max_length and not all(done):
        logits, state = step_fn(tf.constant(tokens), state)
        log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1).numpy()  # [b*k, V]
        parents = np.arange(batch_size * k, dtype=np.int32)
        for b in range(batch_size):
            if done[b]:
                continue
            beams = alive[b]
            prefix = np.array([lp for lp, _ in beams], np.float32)
            total = prefix[:, None] + log_probs[b * k:b * k + len(beams)]  # [alive, V]
            flat = total.reshape(-1)  # [alive * V]
            # Stable sort: equal log-probs keep the lower flat index first, like tf.math.top_k.
            order = np.argsort(-flat, kind="stable")[:2 * k]
            new_alive, new_finished = [], []
            for index in order:
                parent, token = divmod(int(index), vocab_size)
                log_prob = float(flat[index])
                seq = beams[parent][1] + [token]
                if token == end_id:
                    new_finished.append((log_prob / _lp(steps + 1, alpha), log_prob, seq))
                elif len(new_alive) < k:
                    new_alive.append((log_prob, seq, parent))
            # Old finished first so that ties keep the earlier hypothesis (concat + top_k order).
            merged = finished[b] + new_finished
            finished[b] = sorted(merged, key=lambda h: -h[0])[:k]  # sorted() is stable
            alive[b] = [(lp, seq) for lp, seq, _ in new_alive]
            for j, (_, seq, parent) in enumerate(new_alive):
                parents[b * k + j] = b * k + parent
                tokens[b * k + j] = seq[-1]
            for j in range(len(new_alive), k):
                parents[b * k + j] = b * k  # dummy row
                tokens[b * k + j] = start_id
            bound = alive[b][0][0] / _lp(max_length, alpha) if alive[b] else -np.inf
            done[b] = len(finished[b]) == k and min(h[0] for h in finished[b]) > bound
        state = tf.nest.map_structure(lambda x: tf.gather(x, parents), state)
        steps += 1

    ids = np.zeros([batch_size, n_best, max_length], np.int32)
    scores = np.full([batch_size, n_best], -np.inf, np.float32)
    out_log_probs = np.full([batch_size, n_best], -np.inf, np.float32)
    lengths = np.zeros([batch_size, n_best], np.int32)
    for b in range(batch_size):
        candidates = list(finished[b])
        if not done[b] and steps == max_length:
            # Truncated hypotheses, ranked after finished ones on ties (finished come first).
            candidates += [(lp / _lp(max_length, alpha), lp, seq) for lp, seq in alive[b]]
        candidates = sorted(candidates, key=lambda h: -h[0])[:n_best]
        for n, (score, log_prob, seq) in enumerate(candidates):
            ids[b, n, :len(seq)] = seq
            scores[b, n] = score
            out_log_probs[b, n] = log_prob
            lengths[b, n] = len(seq)
    return DecodeResult(ids=ids, scores=scores, log_probs=out_log_probs, lengths=lengths)
