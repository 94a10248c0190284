"""The on-camera runtime: TFLite models on ai-edge-litert (tflite-runtime as fallback), numpy, OpenCV.

Nothing in this package may import torch or TensorFlow, directly or indirectly: a device install
(``pip install -e '.[device]'``) has neither. ``tests/test_device_imports.py`` checks it.
"""
