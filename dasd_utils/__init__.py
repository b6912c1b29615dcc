"""dasd_utils: the helper package behind the DASD course notebooks.

Phases (one module each): ``data`` -> ``teacher`` (generation with logprobs + quality filter) ->
``das`` (Divergence-Aware Sampling) -> ``sft`` (two-stage LoRA) -> ``evaluation`` -> ``report``.
Every phase reads the previous phase's artifacts from a run directory and writes its own.
"""

from .config import Config, load_config, load_run_config

__version__ = "0.1.0"
__all__ = ["Config", "load_config", "load_run_config", "__version__"]
