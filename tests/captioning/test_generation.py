"""Generation through the in-graph decoders with real captioners (vcaption.captioning.evaluation.make_generator)."""

from __future__ import annotations

import pytest
import tensorflow as tf

from vcaption import decoding
from vcaption.config import DecodeConfig
from vcaption.captioning.evaluation import make_generator
from vcaption.captioning.lrcn import LRCNCaptioner
from vcaption.captioning.mrnn import KarpathyMultimodalRNN, MaoMultimodalRNN

MODELS = {
    "lrcn_2f": lambda: LRCNCaptioner(vocab_size=11, variant="2f", hidden_units=8, embedding_dim=6,
                                     image_embedding_dim=5, encoder="features", feature_dim=7),
    "lrcn_1u_rnn": lambda: LRCNCaptioner(vocab_size=11, variant="1u", cell="rnn", hidden_units=8,
                                         embedding_dim=6, image_embedding_dim=5, encoder="features",
                                         feature_dim=7),
    "karpathy": lambda: KarpathyMultimodalRNN(vocab_size=11, hidden_units=8, encoder="features", feature_dim=7),
    "karpathy_lstm": lambda: KarpathyMultimodalRNN(vocab_size=11, hidden_units=8, cell="lstm",
                                                   encoder="features", feature_dim=7),
    "mao": lambda: MaoMultimodalRNN(vocab_size=11, embedding_dims=(4, 6), multimodal_units=8,
                                    encoder="features", feature_dim=7),
}


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("beam_size", [1, 3])
def test_traced_generation_runs_repeatedly_on_every_model(name, beam_size):
    """Regression: Grappler's AddOpsRewrite used to leak loop temporaries, so the *second* call of a
    traced decoder failed with AlreadyExistsError. Several calls, same and new batch sizes."""
    model = MODELS[name]()
    generate = make_generator(model, DecodeConfig(beam_size=beam_size, max_length=6))
    features = tf.random.stateless_normal([4, 7], seed=[1, 2])
    first = generate(features)
    for batch in (4, 4, 3):
        result = generate(features[:batch])
        assert result.ids.shape == (batch, 1, 6)
    tf.debugging.assert_equal(generate(features).ids, first.ids)


@pytest.mark.parametrize("name", ["lrcn_2f", "mao"])
def test_traced_sampling_runs_repeatedly(name):
    model = MODELS[name]()

    @tf.function(reduce_retracing=True)
    def sample(visual):
        state = model.initial_state(model.encode_visual(visual))
        return decoding.sample(model.step, state, max_length=6, num_samples=5, temperature=1 / 1.5,
                               seed=(3, 4))

    features = tf.random.stateless_normal([4, 7], seed=[5, 6])
    results = [sample(features[:b]).ids for b in (4, 4, 2)]
    tf.debugging.assert_equal(results[0], results[1])


def test_traced_greedy_with_small_cnn_survives_a_second_call():
    """The configuration that hit the Grappler temporaries leak in the default training run
    (small_cnn at 64x64, batch 100, T = 17): the second call used to fail with AlreadyExistsError."""
    model = LRCNCaptioner(vocab_size=53, variant="2f", hidden_units=32, embedding_dim=16,
                          encoder="small_cnn", image_size=64)
    generate = make_generator(model, DecodeConfig(beam_size=1, max_length=17))
    images = tf.zeros([100, 64, 64, 3], tf.uint8)
    for _ in range(2):
        assert generate(images).ids.shape == (100, 1, 17)
