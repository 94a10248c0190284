"""Per-frame inference: detect, upscale, guard the expression, track faces; turns a frame into events."""
