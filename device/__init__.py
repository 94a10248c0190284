"""The on-camera runtime: TFLite models on ai-edge-litert (tflite-runtime as fallback), numpy, OpenCV.

Nothing in this package may import torch or TensorFlow, directly or indirectly: a device install
(``pip install -e '.[device]'``) has neither. ``tests/test_device_imports.py`` checks it.
"""

if __name__ != "edge_affectsr.device":  # the repo folder ``device/`` installs as edge_affectsr.device
    raise ImportError(f"{__name__!r}: this folder is the package edge_affectsr.device; "
                      "import edge_affectsr.device (after pip install -e .)")
