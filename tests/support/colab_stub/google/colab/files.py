"""Stand-in for ``google.colab.files``: ``download(path)`` records the path instead of sending it to the browser."""

import os

DOWNLOADS = []


def download(filename):
    if not os.path.isfile(filename):
        raise FileNotFoundError(f"Cannot find file: {filename}")
    DOWNLOADS.append(filename)
    record = os.environ.get("FAKE_COLAB_DOWNLOADS")
    if record:
        with open(record, "a", encoding="utf-8") as fh:
            fh.write(f"{filename}\n")
