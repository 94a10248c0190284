"""Flashing: install a verified model bundle as a release on a camera, self-tested, with atomic switch and rollback."""
