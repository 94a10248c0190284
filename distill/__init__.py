"""Workstation: data, teacher and student models, losses, training, evaluation (the ``[distill]`` extra)."""

if __name__ != "edge_affectsr.distill":  # the repo folder ``distill/`` installs as edge_affectsr.distill
    raise ImportError(f"{__name__!r}: this folder is the package edge_affectsr.distill; "
                      "import edge_affectsr.distill (after pip install -e .)")
