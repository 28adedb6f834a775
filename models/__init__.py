"""Keras side: architectures, losses and metrics, written with `keras` and `keras.ops` only."""
