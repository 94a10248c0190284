"""The shared runtime layer: TFLite loading, SR backends, the FER critic, the face path ([device] extra)."""
