"""vcaption: describe images and videos with language (Keras 3 / TensorFlow)."""

__version__ = "0.1.0"
