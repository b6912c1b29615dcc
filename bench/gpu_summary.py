"""Print the compact summary table of ``bench/gpu_checks.sh`` from the JSON files its sections wrote.

Reads ``env.json``, ``das.json``, ``sft_cap_fp16.json``, ``sft_cap_4bit.json``,
``fp16_bf16_steps.json`` and ``eval_gen.json`` in the output folder (any may be missing or
partial: a section that failed or ran out of time says so) and the sections' exit codes and wall
times (a tab-separated file: name, exit code, seconds). Standard library only, so it runs even
when the stack under test is broken::

    python bench/gpu_summary.py $OUT /tmp/status.tsv
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _load(folder: Path, name: str):
    path = folder / name
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return {"status": f"unreadable: {exc}"}


def _f(x, fmt="{:,.0f}"):
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    return fmt.format(x)


def _losses(run: dict) -> str:
    losses = [x for x in run.get("losses") or []]
    if not losses:
        return "-"
    shown = [f"{x:.3f}" if isinstance(x, (int, float)) else str(x) for x in losses]
    return " ".join(shown) if len(shown) <= 5 else " ".join(shown[:3]) + " .. " + " ".join(shown[-2:])


def main(argv=None) -> int:
    argv = argv if argv is not None else sys.argv[1:]
    folder = Path(argv[0] if argv else "gpu_out")
    status_file = Path(argv[1]) if len(argv) > 1 else None
    lines = ["", "=" * 100,
             ("SUMMARY  (issue 28; every model has RANDOM weights: memory and speed are the real shape's, "
              "losses are not)"),
             "=" * 100]
    if status_file and status_file.is_file():
        rows = [line.split("\t") for line in status_file.read_text().splitlines() if line.strip()]
        lines.append("sections: " + ", ".join(f"{r[0]} rc={r[1]} {r[2]}s" for r in rows if len(r) >= 3))

    env = _load(folder, "env.json")
    if env and "versions" in env:
        v = env["versions"]
        lines.append("versions: " + " ".join(f"{k}={v.get(k)}" for k in (
            "gpu", "driver", "torch", "torch_cuda", "transformers", "peft", "trl", "datasets", "accelerate",
            "bitsandbytes", "pyarrow", "python")))
        mm, cp = env.get("matmul_bf16", {}), env.get("copy_d2d", {})
        lines.append(f"ceilings: bf16 matmul {mm.get('n')}^3 {_f(mm.get('tflops_median'), '{:.0f}')} TFLOP/s "
                     f"(median of {mm.get('iters')}); copy {_f(cp.get('tb_per_s_read_plus_write'), '{:.2f}')} TB/s "
                     "(read+write, median)")
    else:
        lines.append(f"env: {env.get('status') if env else 'missing'}")

    das = _load(folder, "das.json")
    lines.append("-" * 100)
    if das and "tokens_per_s" in das:
        share = das.get("share_of_matmul_peak")
        lines.append(f"[1] DAS scoring {das['batch']}x{das['seq']} bf16: {_f(das['tokens_per_s'])} tokens/s "
                     f"(median {_f(das.get('tokens_per_s_median'))}), {_f(das['tflops_per_s'], '{:.0f}')} TFLOP/s = "
                     f"{_f(share * 100 if share else None, '{:.1f}')}% of the matmul peak, peak "
                     f"{_f(das.get('peak_gb'), '{:.2f}')} GiB | full-vocab log-softmax: "
                     f"{_f(das.get('full_vocab_tokens_per_s'))} tokens/s, {_f(das.get('full_vocab_logsoftmax_peak_gb'), '{:.2f}')} GiB "
                     f"| targets >=40k tok/s, <16 GB")
    else:
        lines.append(f"[1] DAS scoring: {das.get('status', 'no result') if das else 'missing'}")

    for name, title in (("sft_cap_fp16.json", "[2] SFT colab settings, fp16"), ("sft_cap_4bit.json", "[2b] SFT colab settings, 4-bit NF4")):
        rep = _load(folder, name)
        lines.append("-" * 100)
        if not rep:
            lines.append(f"{title}: missing (section did not run or wrote nothing)")
            continue
        cap = rep.get("cap") or {}
        lines.append(f"{title} under a {cap.get('cap_gib')} GiB cap (applied={cap.get('applied')}); "
                     f"build {rep.get('build_s')} s; after build {rep.get('allocated_after_build_gib')} GiB; "
                     f"status: {rep.get('status')}" + (f"; FALLBACK: {rep['fallback']}" if rep.get("fallback") else ""))
        if rep.get("bitsandbytes"):
            lines.append(f"    bitsandbytes: {rep['bitsandbytes']}")
        runs = rep.get("runs") or []
        if runs:
            lines.append(f"    {'run':<18} {'status':<10} {'peak alloc':>10} {'reserved':>9} {'tokens/s':>9}  losses")
            for r in runs:
                lines.append(f"    {r['label']:<18} {str(r['status'])[:10]:<10} {_f(r.get('peak_allocated_gb'), '{:.2f}'):>10} "
                             f"{_f(r.get('peak_reserved_gb'), '{:.2f}'):>9} {_f(r.get('tokens_per_s_steady')):>9}  {_losses(r)}"
                             + (f"  [{r['error'][:90]}]" if r.get("error") and r["status"] != "OOM" else ""))

    stab = _load(folder, "fp16_bf16_steps.json")
    lines.append("-" * 100)
    if stab and stab.get("runs"):
        lines.append(f"[4] fp16 vs bf16, {stab.get('seq_len')} tokens, 2x4, lr 2e-4 cosine, guard on; status: {stab.get('status')}")
        for r in stab["runs"]:
            norms = [g for g in r.get("grad_norms") or [] if isinstance(g, (int, float))]
            lines.append(f"    {r['label']:<14} {str(r['status'])[:44]:<44} non-finite {r.get('non_finite_losses')}  "
                         f"losses {_losses(r)}  grad norm {_f(min(norms) if norms else None, '{:.3g}')}-"
                         f"{_f(max(norms) if norms else None, '{:.3g}')}  loss scale {_f(r.get('fp16_loss_scale_final'), '{:g}')}"
                         f"  {_f(r.get('tokens_per_s_steady'))} tok/s")
    else:
        lines.append(f"[4] fp16 vs bf16: {stab.get('status', 'no result') if stab else 'missing'}")

    gen = _load(folder, "eval_gen.json")
    lines.append("-" * 100)
    if gen and gen.get("runs"):
        lines.append(f"[3] greedy_batch, bf16, prompt {gen['prompt_len']} + {gen['new_tokens']} new tokens; bound at "
                     f"{_f(gen.get('copy_bandwidth_tb_per_s'), '{:.2f}')} TB/s; status: {gen.get('status')}")
        lines.append(f"    {'batch':>5} {'decode tok/s':>12} {'ms/step':>8} {'bound tok/s':>11} {'bound ms':>8} {'share':>6} "
                     f"{'overall tok/s':>13} {'peak GiB':>8} full-length")
        for r in gen["runs"]:
            share = r.get("share_of_bound")
            lines.append(f"    {r['batch']:>5} {_f(r.get('tokens_per_s_decode'), '{:,.1f}'):>12} {r['ms_per_decode_step']:>8.2f} "
                         f"{_f(r['bound_tokens_per_s'], '{:,.0f}'):>11} {r['bound_ms_per_step_mean']:>8.2f} "
                         f"{_f(share * 100 if share else None, '{:.1f}'):>5}% {_f(r['tokens_per_s_overall'], '{:,.1f}'):>13} "
                         f"{_f(r.get('peak_gib'), '{:.2f}'):>8} {r['every_row_full_length']}")
    else:
        lines.append(f"[3] eval generation: {gen.get('status', 'no result') if gen else 'missing'}")
    lines.append("=" * 100)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
