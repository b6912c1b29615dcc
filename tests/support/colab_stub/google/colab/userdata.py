"""Stand-in for ``google.colab.userdata``: secrets from the JSON file named by ``FAKE_COLAB_SECRETS``."""

import json
import os


class SecretNotFoundError(Exception):
    pass


class NotebookAccessError(Exception):
    pass


def get(key):
    if key in [k for k in os.environ.get("FAKE_COLAB_NO_ACCESS", "").split(",") if k]:
        raise NotebookAccessError(key)
    path = os.environ.get("FAKE_COLAB_SECRETS")
    secrets = json.load(open(path, encoding="utf-8")) if path and os.path.isfile(path) else {}
    if key not in secrets:
        raise SecretNotFoundError(key)
    return secrets[key]
