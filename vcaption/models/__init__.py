"""Keras functional models of the four families."""
