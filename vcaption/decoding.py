"""Model-agnostic, batched, in-graph decoding: greedy, beam search, best-of-N sampling.

Every decoder takes a *step function* and an *initial state* and knows nothing about models:

    logits, new_state = step_fn(token_ids, state)
      token_ids: int32 [batch]            the previously emitted token (<start> at t = 0)
      state:     nested dict of tensors,  every leaf [batch, ...] (all per-example context)
      logits:    float [batch, vocab]     unnormalised scores of the next token
      new_state: same structure and leaf shapes as `state`

Token ids follow the vocabulary convention <pad>=0, <start>=1, <end>=2, <unk>=3.

All decoders are written with `tf.while_loop` and core TF ops only (no py_function), so they trace
into a `tf.function`, run batched, and export in a SavedModel. Buffers have static shapes
([batch, max_length]) so the loops are XLA-friendly when the batch size is static.

Output convention (shared by all decoders, see `DecodeResult`):
  * `ids` exclude the <start> token, contain <end> when it was emitted, and are <pad> (0) after it;
    their last axis is always `max_length` (the maximum number of generated tokens, <end> included).
  * `lengths` = |Y| = number of generated tokens, counting <end> when it was emitted. A hypothesis
    that reaches `max_length` without <end> is *truncated* and has |Y| = max_length.
  * `log_probs` = log P(Y | image) = Σ_t log softmax(logits_t)[y_t] over those |Y| tokens
    (unnormalised, untempered).
  * `scores` = the ranking key. For beam search it is the length-normalised log-probability of
    GNMT (Wu et al. 2016, eq. 14), as in `official.nlp.modeling.ops.beam_search`:
        score(Y) = log P(Y) / lp(Y),   lp(Y) = ((5 + |Y|) / 6) ** alpha
    (alpha = 0 ⇒ lp = 1 ⇒ score = raw log-probability). Greedy and sampling do not normalise:
    their `scores` equal `log_probs`.
  * Slots that could not be filled (fewer valid hypotheses than requested) have ids all <pad>,
    length 0 and score / log_prob = -inf.
"""

import functools
from typing import NamedTuple

import tensorflow as tf

PAD_ID = 0
START_ID = 1
END_ID = 2

# `official.nlp.modeling.ops.beam_search` marks impossible candidates with -1e7 (`inf(float32)`);
# anything below half of that is a filler/garbage hypothesis, never a real one.
_INVALID_LOG_PROB = -5e6


class DecodeResult(NamedTuple):
    """Output of every decoder; hypotheses along axis 1 are sorted best first.

    Attributes:
      ids: int32 [batch, n, max_length] generated tokens; <start> excluded, <pad> after <end>.
      scores: float32 [batch, n] ranking key (length-normalised for beam search, else = log_probs).
      log_probs: float32 [batch, n] unnormalised sum of the model's log-probabilities of `ids`
        (including <end>).
      lengths: int32 [batch, n] |Y| = number of generated tokens including <end> (max_length for a
        truncated hypothesis, 0 for an unfilled slot).
    """

    ids: tf.Tensor
    scores: tf.Tensor
    log_probs: tf.Tensor
    lengths: tf.Tensor


def length_penalty(lengths, alpha):
    """GNMT length normalisation lp(Y) = ((5 + |Y|) / 6) ** alpha.

    Args:
      lengths: int or float tensor, |Y| = number of generated tokens including <end>.
      alpha: float exponent; 0 disables normalisation (lp = 1).

    Returns:
      float32 tensor of the same shape as `lengths`.
    """
    return tf.pow((5.0 + tf.cast(lengths, tf.float32)) / 6.0, tf.cast(alpha, tf.float32))


def tile_state(state, multiple):
    """Repeats every example of a state `multiple` times along the batch axis.

    Rows are example-major: row `b * multiple + j` is copy `j` of example `b`, which is the layout
    `tf.reshape(x, [batch, multiple, ...])` undoes.

    Args:
      state: nested structure of tensors, every leaf [batch, ...].
      multiple: python int.

    Returns:
      The same structure with every leaf [batch * multiple, ...].
    """

    def tile(x):
        x = tf.convert_to_tensor(x)
        shape = _shape_list(x)
        x = tf.expand_dims(x, 1)  # [batch, 1, ...]
        x = tf.tile(x, [1, multiple] + [1] * (len(shape) - 1))  # [batch, multiple, ...]
        return tf.reshape(x, [shape[0] * multiple] + shape[1:])  # [batch * multiple, ...]

    return tf.nest.map_structure(tile, state)


# ----------------------------------------------------------------------------------------------
# Greedy and sampling share one loop; they differ only in how the next token is chosen.


def greedy(step_fn, initial_state, max_length, start_id=START_ID, end_id=END_ID):
    """Greedy decoding: at each step emit argmax_v logits[v] until <end> or `max_length`.

    Args:
      step_fn: `(token_ids int32 [batch], state) -> (logits [batch, vocab], state)`.
      initial_state: nested dict, every leaf [batch, ...].
      max_length: python int, maximum number of generated tokens (<end> included).
      start_id: token fed at t = 0.
      end_id: token that finishes a sequence.

    Returns:
      `DecodeResult` with n = 1; `scores` = `log_probs` = Σ log p(y_t) including <end>.
    """
    ids, log_probs, lengths = _decode_loop(
        step_fn, initial_state, max_length,
        choose=lambda t, logits: tf.argmax(logits, axis=-1, output_type=tf.int32),
        start_id=start_id, end_id=end_id)
    return DecodeResult(
        ids=ids[:, tf.newaxis, :],  # [batch, 1, length]
        scores=log_probs[:, tf.newaxis],  # [batch, 1]
        log_probs=log_probs[:, tf.newaxis],
        lengths=lengths[:, tf.newaxis])


def sample(step_fn, initial_state, max_length, num_samples, temperature=1.0,
           seed=(0, 0), n_best=1, start_id=START_ID, end_id=END_ID):
    """Best-of-N sampling (LRCN, Donahue et al. PAMI 2017, §5: N = 100 samples, keep the most likely).

    Each example's state is tiled `num_samples` times; at every step each copy draws
        y_t ~ softmax(logits_t / temperature)
    with a true temperature T: > 1 flattens, < 1 sharpens, -> 0 is greedy. This is the one
    temperature convention of vcaption (the export's `caption_sample` takes the same T). LRCN's
    Table 6 "T" is the reciprocal: "a scalar factor T (inverse of the temperature) applied to the
    logits", as in its Caffe `captioner.py`, which multiplies the logits by `temp`. So LRCN's
    T = 1, 1.5, 2 are temperature = 1, 2/3, 1/2 here (`lrcn_temperature`). The samples are then
    ranked per example by their log-likelihood under the *untempered* model, log P(Y) = Σ_t log
    softmax(logits_t)[y_t] (<end> included, no length normalisation), duplicates removed, and the
    best `n_best` returned.

    Randomness is stateless (`tf.random.stateless_categorical` with a per-step key derived by
    `stateless_fold_in(seed, t)`), so results are deterministic given `seed` and the batch.

    Args:
      step_fn: `(token_ids int32 [batch], state) -> (logits [batch, vocab], state)`.
      initial_state: nested dict, every leaf [batch, ...].
      max_length: python int, maximum number of generated tokens (<end> included).
      num_samples: python int N, samples drawn per example.
      temperature: float T > 0 of softmax(logits / T): a scalar, or a [batch, 1] tensor giving
        each (tiled) row its own T.
      seed: int32/int64 shape [2] stateless seed.
      n_best: python int <= num_samples, number of distinct samples returned per example.
      start_id: token fed at t = 0.
      end_id: token that finishes a sequence.

    Returns:
      `DecodeResult` with n = n_best; `scores` = `log_probs` (untempered). If fewer than `n_best`
      distinct samples were drawn, the remaining slots are unfilled (score -inf, length 0).
    """
    if n_best > num_samples:
        raise ValueError(f"n_best={n_best} > num_samples={num_samples}")
    ids, log_probs, lengths = draw_samples(step_fn, initial_state, max_length, num_samples, temperature,
                                           seed, start_id, end_id)

    # Identical samples would fill the N-best list with copies: keep the first occurrence only.
    # Pairwise comparison costs O(batch · N² · L) booleans (~6 MB for 32 × 100² × 20).
    same = tf.reduce_all(
        tf.equal(ids[:, :, tf.newaxis, :], ids[:, tf.newaxis, :, :]), axis=-1)  # [batch, s, s]
    earlier = tf.linalg.band_part(tf.ones([num_samples, num_samples], tf.bool), -1, 0)
    earlier = tf.logical_and(earlier, tf.logical_not(tf.eye(num_samples, dtype=tf.bool)))
    duplicate = tf.reduce_any(tf.logical_and(same, earlier[tf.newaxis]), axis=-1)  # [batch, s]
    key = tf.where(duplicate, tf.constant(-float("inf")), log_probs)
    return _select_n_best(key, ids, log_probs, lengths, n_best)


def draw_samples(step_fn, initial_state, max_length, num_samples, temperature=1.0, seed=(0, 0),
                 start_id=START_ID, end_id=END_ID):
    """`num_samples` captions per example, y_t ~ softmax(logits_t / temperature), duplicates kept
    and in drawing order: what `sample` ranks, and what self-critical training scores
    (`vcaption.captioning.self_critical`). Arguments as `sample`'s.

    Returns:
      (ids int32 [batch, samples, max_length] with <pad> after <end>, untempered log_probs
      float32 [batch, samples], lengths int32 [batch, samples]).
    """
    if isinstance(temperature, (int, float)) and not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    batch_size = _batch_size(initial_state)
    seed = tf.convert_to_tensor(seed)
    if seed.dtype not in (tf.int32, tf.int64):
        seed = tf.cast(seed, tf.int64)
    temperature = tf.cast(temperature, tf.float32)

    def choose(t, logits):
        step_seed = tf.random.experimental.stateless_fold_in(seed, t)
        draws = tf.random.stateless_categorical(
            logits / temperature, 1, seed=step_seed, dtype=tf.int32)  # [batch * samples, 1]
        return draws[:, 0]

    ids, log_probs, lengths = _decode_loop(
        step_fn, tile_state(initial_state, num_samples), max_length, choose=choose,
        start_id=start_id, end_id=end_id)
    ids = tf.reshape(ids, [batch_size, num_samples, max_length])  # [batch, samples, length]
    log_probs = tf.reshape(log_probs, [batch_size, num_samples])  # [batch, samples]
    lengths = tf.reshape(lengths, [batch_size, num_samples])  # [batch, samples]
    return ids, log_probs, lengths


def lrcn_temperature(lrcn_t):
    """The true temperature of LRCN Table 6's "T", a factor on the logits (its inverse)."""
    return 1.0 / lrcn_t


def _decode_loop(step_fn, initial_state, max_length, choose, start_id, end_id):
    """Runs step_fn up to max_length times; returns ids [B, L], log_probs [B], lengths [B]."""
    batch_size = _batch_size(initial_state)
    positions = tf.range(max_length)[tf.newaxis, :]  # [1, length]

    def cond(t, tokens, ids, log_probs, lengths, finished, state):
        del tokens, ids, log_probs, lengths, state
        return tf.logical_and(t < max_length, tf.logical_not(tf.reduce_all(finished)))

    def body(t, tokens, ids, log_probs, lengths, finished, state):
        logits, new_state = step_fn(tokens, state)
        new_state = _match_shapes(new_state, state)
        logits = tf.cast(logits, tf.float32)
        token_log_probs = tf.nn.log_softmax(logits, axis=-1)  # [batch, vocab]
        # Finished rows keep being stepped (the batch is static) but emit <pad> at zero cost, so
        # nothing follows <end>.
        next_tokens = tf.where(finished, PAD_ID, choose(t, logits))  # [batch]
        next_log_probs = tf.gather(token_log_probs, next_tokens, batch_dims=1)  # [batch]
        log_probs += tf.where(finished, 0.0, next_log_probs)
        lengths += tf.cast(tf.logical_not(finished), tf.int32)
        # Write column t without dynamic-shape updates (static [batch, length] buffer).
        ids = tf.where(tf.equal(positions, t), next_tokens[:, tf.newaxis], ids)  # [batch, length]
        finished = tf.logical_or(finished, tf.equal(next_tokens, end_id))
        return t + 1, next_tokens, ids, log_probs, lengths, finished, new_state

    loop_vars = (
        tf.constant(0),
        tf.fill([batch_size], tf.constant(start_id, tf.int32)),
        tf.zeros([batch_size, max_length], tf.int32),
        tf.zeros([batch_size], tf.float32),
        tf.zeros([batch_size], tf.int32),
        tf.zeros([batch_size], tf.bool),
        tf.nest.map_structure(tf.convert_to_tensor, initial_state),
    )
    # One iteration at a time: each step needs the previous token anyway, and concurrent iterations
    # trip a Grappler bug (AddOpsRewrite temporaries colliding across iterations).
    _, _, ids, log_probs, lengths, _, _ = tf.while_loop(
        cond, body, loop_vars, maximum_iterations=max_length, parallel_iterations=1)
    return ids, log_probs, lengths


# ----------------------------------------------------------------------------------------------
# Beam search on top of official.nlp.modeling.ops.beam_search.


def beam_search(step_fn, initial_state, vocab_size, beam_size, max_length, n_best=1, alpha=0.0,
                start_id=START_ID, end_id=END_ID, padded_decode=None):
    """N-best beam search with GNMT length normalisation, built on tf-models-official.

    The search is `official.nlp.modeling.ops.beam_search.SequenceBeamSearch`: each step extends
    the `beam_size` alive hypotheses by every token, keeps the 2·beam_size most probable
    extensions, moves those ending in <end> to a finished list (top beam_size by score — finished
    hypotheses are never extended) and keeps the beam_size best others alive.

        score(Y) = log P(Y) / lp(Y),   lp(Y) = ((5 + |Y|) / 6) ** alpha

    with |Y| the number of generated tokens *including <end>* (the official code divides by
    lp(i + 1) at loop index i, where i + 1 tokens have been generated). alpha = 0 gives the raw
    log-probability.

    Candidates returned (ranked by score, best first):
      * finished hypotheses (ended with <end> at or before `max_length`);
      * truncated hypotheses: the alive beams that reach `max_length` without <end>, scored with
        |Y| = max_length. max_length acts as an implicit end whose probability is not counted.

    Differences from calling `sequence_beam_search` directly (each found by reading its source):
      * It only returns alive hypotheses when an example has no finished one at all, and then
        with *unnormalised* scores; here truncated and finished hypotheses compete on one score.
      * Its early stop fires when the worst *filled* finished slot beats the best alive bound,
        even if some of the beam_size finished slots are still empty fillers (score -1e7): with
        n_best > 1 it then returns fillers although alive beams could still finish. Here the
        loop only stops early once all beam_size finished slots hold real hypotheses.
      * With `padded_decode` its sequences carry the <start> id after <end>, and its cache must
        be all float32; ids are re-padded here and non-float32 state leaves are bit-cast.
      * Its returned scores are normalised, so `log_probs` are recovered as score · lp(|Y|).

    Args:
      step_fn: `(token_ids int32 [batch], state) -> (logits [batch, vocab], state)`.
      initial_state: nested dict, every leaf [batch, ...]; tiled to [batch * beam_size, ...].
      vocab_size: python int V (logits width).
      beam_size: python int k.
      max_length: python int, maximum number of generated tokens (<end> included).
      n_best: python int <= beam_size, hypotheses returned per example.
      alpha: float >= 0, length-normalisation exponent.
      start_id: token fed at t = 0.
      end_id: token that finishes a hypothesis.
      padded_decode: use fixed-size [batch, k, max_length + 1] buffers (XLA/TPU friendly; needs a
        static batch size). Default: True iff the batch size is static.

    Returns:
      `DecodeResult` with n = n_best: `scores` normalised as above, `log_probs` unnormalised,
      `lengths` = |Y|.
    """
    if not 1 <= n_best <= beam_size:
        raise ValueError(f"need 1 <= n_best <= beam_size, got n_best={n_best}, k={beam_size}")
    if isinstance(alpha, (int, float)) and alpha < 0:
        raise ValueError("alpha must be >= 0 (the early-stop bound assumes lp grows with |Y|)")
    batch_size = _batch_size(initial_state)
    if padded_decode is None:
        padded_decode = isinstance(batch_size, int)
    initial_state = tf.nest.map_structure(tf.convert_to_tensor, initial_state)
    cache, leaf_dtypes = _encode_cache(initial_state)

    def symbols_to_logits_fn(ids, i, flat_cache):
        # ids: [batch * k, i + 1] (or [batch * k, 1] when padded); the state already carries the
        # position, so only the last token is needed.
        del i
        state = _decode_cache(flat_cache, leaf_dtypes)
        logits, new_state = step_fn(ids[:, -1], state)
        new_state = _match_shapes(new_state, state)
        return tf.cast(logits, tf.float32), _encode_cache(new_state)[0]

    searcher = _searcher_class()(
        symbols_to_logits_fn, vocab_size=vocab_size, beam_size=beam_size, alpha=alpha,
        max_decode_length=max_length, eos_id=end_id, padded_decode=padded_decode,
        dtype=tf.float32)
    initial_ids = tf.fill([batch_size], tf.constant(start_id, tf.int32))
    final = searcher.search(initial_ids, cache)

    def strip_start(seq):
        # [batch, k, <= max_length + 1] -> [batch, k, max_length]; non-padded decoding stops
        # growing the sequences at the step where the loop ended.
        seq = seq[:, :, 1:]
        seq = tf.pad(seq, [[0, 0], [0, 0], [0, max_length - tf.shape(seq)[2]]])
        return tf.reshape(seq, [batch_size, beam_size, max_length])  # [batch, k, length]

    # Finished list: scores are already normalised by lp(|Y|).
    finished_ids, finished_lengths = _mask_after_end(strip_start(final["FINISHED_SEQ"]), end_id)
    finished_scores = final["FINISHED_SCORES"]  # [batch, k]
    finished_valid = tf.logical_and(final["FINISHED_FLAGS"],
                                    finished_scores > _INVALID_LOG_PROB)
    finished_log_probs = finished_scores * length_penalty(finished_lengths, alpha)

    # Alive beams are truncated hypotheses only if the loop ran to max_length; after an early stop
    # they are provably worse than all k finished ones (and shorter than max_length).
    reached_max = final["CUR_INDEX"] >= max_length
    alive_ids = strip_start(final["ALIVE_SEQ"])  # [batch, k, length]; contain no <end>
    alive_log_probs = final["ALIVE_LOG_PROBS"]  # [batch, k]
    alive_valid = tf.logical_and(reached_max, alive_log_probs > _INVALID_LOG_PROB)
    alive_lengths = tf.fill(tf.shape(alive_log_probs), max_length)
    alive_scores = alive_log_probs / length_penalty(max_length, alpha)

    neg_inf = tf.constant(-float("inf"))
    key = tf.concat([tf.where(finished_valid, finished_scores, neg_inf),
                     tf.where(alive_valid, alive_scores, neg_inf)], axis=1)  # [batch, 2k]
    return _select_n_best(
        key,
        tf.concat([finished_ids, alive_ids], axis=1),  # [batch, 2k, length]
        tf.concat([finished_log_probs, alive_log_probs], axis=1),  # [batch, 2k]
        tf.concat([finished_lengths, alive_lengths], axis=1),  # [batch, 2k]
        n_best)


@functools.lru_cache(maxsize=None)
def _searcher_class():
    """SequenceBeamSearch with a correct N-best early stop and the raw final state.

    Built lazily: importing `official.nlp.modeling` costs seconds and greedy/sampling users
    should not pay for it.
    """
    from official.nlp.modeling.ops import beam_search as official_beam_search  # pylint: disable=g-import-not-at-top

    keys = official_beam_search._StateKeys  # pylint: disable=protected-access

    class _SequenceBeamSearch(official_beam_search.SequenceBeamSearch):

        def _continue_search(self, state):
            # Stop early only if, for every example, all k finished slots are real and the worst
            # of them beats the best score any alive beam could still reach: log-probs only
            # decrease and lp(|Y|) <= lp(max_length) for alpha >= 0, so
            # score <= alive_log_prob / lp(max_length).
            i = state[keys.CUR_INDEX]
            finished_scores = state[keys.FINISHED_SCORES]  # [batch, k]
            finished_real = tf.logical_and(state[keys.FINISHED_FLAGS],
                                           finished_scores > _INVALID_LOG_PROB)
            best_alive_bound = state[keys.ALIVE_LOG_PROBS][:, 0] / length_penalty(
                self.max_decode_length, self.alpha)  # [batch]; alive beams are sorted
            done = tf.logical_and(
                tf.reduce_all(finished_real, axis=1),
                tf.reduce_min(finished_scores, axis=1) > best_alive_bound)  # [batch]
            return tf.logical_and(i < self.max_decode_length,
                                  tf.logical_not(tf.reduce_all(done)))

        def _process_finished_state(self, finished_state):
            # Keep everything; `beam_search` merges finished and truncated hypotheses itself.
            return finished_state

    return _SequenceBeamSearch


# ----------------------------------------------------------------------------------------------
# Helpers.


def _select_n_best(key, ids, log_probs, lengths, n_best):
    """Top n_best by `key` (-inf = unfilled); unfilled slots get pad ids, length 0, -inf."""
    top_keys, top_index = tf.math.top_k(key, k=n_best)  # [batch, n]
    ids = tf.gather(ids, top_index, batch_dims=1)  # [batch, n, length]
    log_probs = tf.gather(log_probs, top_index, batch_dims=1)  # [batch, n]
    lengths = tf.gather(lengths, top_index, batch_dims=1)  # [batch, n]
    filled = top_keys > -float("inf")
    return DecodeResult(
        ids=tf.where(filled[:, :, tf.newaxis], ids, PAD_ID),
        scores=top_keys,
        log_probs=tf.where(filled, log_probs, -float("inf")),
        lengths=tf.where(filled, lengths, 0))


def _mask_after_end(ids, end_id):
    """Replaces every token after the first <end> by <pad>; returns (ids, |Y|)."""
    is_end = tf.cast(tf.equal(ids, end_id), tf.int32)
    after_end = tf.cumsum(is_end, axis=-1, exclusive=True) > 0  # [..., length]
    ids = tf.where(after_end, PAD_ID, ids)
    lengths = tf.shape(ids)[-1] - tf.reduce_sum(tf.cast(after_end, tf.int32), axis=-1)
    return ids, lengths


def _encode_cache(state):
    """Maps every leaf to float32 losslessly (the official search rejects other cache dtypes).

    32-bit integers are bit-cast (the cache only goes through tile/reshape/gather, which copy
    bits), 64-bit types become a trailing [..., 2] of float32, narrow types and bool are cast.
    """
    leaves = tf.nest.flatten(state)
    encoded, dtypes = [], []
    for leaf in leaves:
        leaf = tf.convert_to_tensor(leaf)
        dtype = leaf.dtype
        if dtype == tf.float32:
            out = leaf
        elif dtype in (tf.int32, tf.uint32, tf.int64, tf.uint64, tf.float64):
            out = tf.bitcast(leaf, tf.float32)
        elif dtype in (tf.float16, tf.bfloat16, tf.int8, tf.uint8, tf.int16, tf.uint16, tf.bool):
            out = tf.cast(leaf, tf.float32)
        else:
            raise TypeError(f"unsupported state dtype for beam search: {dtype}")
        encoded.append(out)
        dtypes.append(dtype)
    return tf.nest.pack_sequence_as(state, encoded), tuple(dtypes)


def _decode_cache(cache, dtypes):
    leaves = []
    for leaf, dtype in zip(tf.nest.flatten(cache), dtypes):
        if dtype == tf.float32:
            leaves.append(leaf)
        elif dtype in (tf.int32, tf.uint32, tf.int64, tf.uint64, tf.float64):
            leaves.append(tf.bitcast(leaf, dtype))
        else:
            leaves.append(tf.cast(leaf, dtype))
    return tf.nest.pack_sequence_as(cache, leaves)


def _match_shapes(new_state, state):
    """Gives step outputs the (more static) shapes of their inputs so while_loop shapes agree."""
    tf.nest.assert_same_structure(new_state, state)

    def match(new, old):
        new = tf.convert_to_tensor(new)
        if not tf.executing_eagerly():
            new.set_shape(old.shape)
        return new

    return tf.nest.map_structure(match, new_state, state)


def _batch_size(state):
    leaves = tf.nest.flatten(state)
    if not leaves:
        raise ValueError("the decoding state must contain at least one [batch, ...] tensor")
    first = tf.convert_to_tensor(leaves[0])
    static = first.shape[0]
    return int(static) if static is not None else tf.shape(first)[0]


def _shape_list(x):
    dynamic = tf.shape(x)
    return [dim if dim is not None else dynamic[i] for i, dim in enumerate(x.shape.as_list())]
