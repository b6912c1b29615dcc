"""Stand-in for ``google.colab.drive``: mounting makes ``<mountpoint>/MyDrive`` a plain directory."""

import os

MOUNTS = []


def mount(mountpoint, force_remount=False, timeout_ms=120000, readonly=False):
    os.makedirs(os.path.join(mountpoint, "MyDrive"), exist_ok=True)
    MOUNTS.append(mountpoint)
    print(f"Mounted at {mountpoint}")
