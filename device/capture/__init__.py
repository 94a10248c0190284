"""Frame capture: the sources a camera daemon reads (folder, OpenCV, Pi camera, the built-in clip) and their config."""
