"""The service: the `run` daemon, its config, and the `run`/`bench`/`camera-eval` commands that start it."""
