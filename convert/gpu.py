"""Mobile-GPU delegate checks for the fp16 model: TFLite's analyzer (known to say "compatible" too
easily, so it is only reported) plus our own rules: every op in the GPU delegate's list, ranks <= 4,
static shapes."""

from __future__ import annotations

import contextlib
import io

from edge_affectsr.convert.tflite_inspect import ModelInfo

# Ops the TFLite GPU delegate (OpenCL/OpenGL, v2) implements, as listed in its documentation.
GPU_OPS = {
    "ABS", "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "COS", "DEPTH_TO_SPACE", "DEPTHWISE_CONV_2D",
    "DEQUANTIZE", "DIV", "ELU", "EXP", "FULLY_CONNECTED", "HARD_SWISH", "LEAKY_RELU", "LOG", "LOGISTIC",
    "MAX_POOL_2D", "MAXIMUM", "MEAN", "MINIMUM", "MUL", "PAD", "PRELU", "RELU", "RELU6", "RESHAPE",
    "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "RSQRT", "SIN", "SLICE", "SOFTMAX", "SPACE_TO_DEPTH", "SQRT",
    "SQUARE", "SQUARED_DIFFERENCE", "STRIDED_SLICE", "SUB", "TANH", "TRANSPOSE", "TRANSPOSE_CONV",
}


def analyzer_text(path) -> str:
    """``tf.lite.experimental.Analyzer`` output with GPU compatibility, or why it could not run."""
    try:
        import tensorflow as tf
    except ImportError as e:
        return f"analyzer unavailable: {e}"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        tf.lite.experimental.Analyzer.analyze(model_path=str(path), gpu_compatibility=True)
    return buf.getvalue()


def gpu_report(model: ModelInfo) -> dict:
    problems = []
    for op in model.ops:
        if op.name not in GPU_OPS:
            problems.append(f"#{op.index} {op.name}: not in the GPU delegate's op list")
        for i in op.inputs + op.outputs:
            t = model.tensors.get(i)
            if t is not None and (len(t.shape) > 4 or any(d <= 0 for d in t.shape)):
                problems.append(f"#{op.index} {op.name}: tensor {t.name} {list(t.shape)} (rank > 4 or dynamic)")
    text = analyzer_text(model.path)
    return {"compatible": not problems, "problems": problems,
            "analyzer_says_compatible": "GPU COMPATIBILITY WARNING" not in text, "analyzer": text[-3000:]}
