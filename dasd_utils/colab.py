"""Old name of :mod:`dasd_utils.notebook.setup`, kept so that notebooks saved before the move still run.

A notebook copied to Drive from an earlier version calls ``colab.install`` and
``colab.setup_notebook`` in its set-up cell; new notebooks import :mod:`dasd_utils.notebook`.
"""

from .notebook.setup import *  # noqa: F401,F403
from .notebook.setup import __all__  # noqa: F401
