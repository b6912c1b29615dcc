"""Stand-in for ``google.colab`` (tests only): Drive is a directory, secrets are a JSON file."""

from . import drive, files, userdata  # noqa: F401
