"""The camera side: ``capture`` (frame sources) -> ``inference`` (the per-frame pipeline on the TFLite
models of ``edge_affectsr.runtime``) -> ``reporting`` (events to JSONL, SQLite, MQTT, HTTP); ``service``
runs them as the ``run`` daemon (and ``bench``, ``camera-eval``); ``flash`` installs a bundle on a camera.

Nothing in this package may import torch or TensorFlow, directly or indirectly: a device install
(``pip install -e '.[device]'``) has neither. ``tests/device/test_imports.py`` checks it.
"""

if __name__ != "edge_affectsr.device":  # the repo folder ``device/`` installs as edge_affectsr.device
    raise ImportError(f"{__name__!r}: this folder is the package edge_affectsr.device; "
                      "import edge_affectsr.device (after pip install -e .)")
