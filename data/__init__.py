"""Input side: dataset discovery, mask decoding, augmentation and the tf.data pipeline."""
