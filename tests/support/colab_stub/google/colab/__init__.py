"""Stand-in for ``google.colab`` (tests only): Drive is a directory, secrets are a JSON file."""

from . import drive, userdata  # noqa: F401
