"""Workstation: ONNX export, onnx2tf int8/fp16 TFLite, verification gates, bundles (the ``[convert]`` extra)."""

if __name__ != "edge_affectsr.convert":  # the repo folder ``convert/`` installs as edge_affectsr.convert
    raise ImportError(f"{__name__!r}: this folder is the package edge_affectsr.convert; "
                      "import edge_affectsr.convert (after pip install -e .)")
