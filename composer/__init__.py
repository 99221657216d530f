"""composer: build devpod container images from a TOML recipe of cached layer modules."""

__version__ = "0.1.0"

# Bumped whenever the way a step is built changes, so old cache entries stop matching.
STEP_FORMAT = 3
