"""Old name of :mod:`dasd_utils.notebook.examples`, kept so that notebooks saved before the move still run."""

from .notebook.examples import *  # noqa: F401,F403
from .notebook.examples import __all__  # noqa: F401
