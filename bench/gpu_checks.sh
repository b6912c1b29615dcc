#!/usr/bin/env bash
# Issue 28's GPU measurements in one command, for a lent GPU machine (the device tool runs it from
# the repository root, with the wheels of .whl/ carried: trl, datasets and their missing
# dependencies, peft and bitsandbytes; docs/performance.md lists them with the results).
#
#   bash bench/gpu_checks.sh                     # on the GPU machine; results in $OUT (or ./gpu_out)
#   SKIP_INSTALL=1 PY=.venv/bin/python bash bench/gpu_checks.sh --tiny    # dry run on a CPU
# WHEELS=folder takes the wheels from elsewhere than ./.whl (e.g. when run from a snapshot of the
# repository carried inside it). SECTIONS="sft_cap_4bit eval_gen" runs only those (a re-run of the
# ones that failed; das and eval_gen then go without env.json: no share of peak for das, and
# eval_gen measures the copy bandwidth itself).
#
# Sections, most important first, each a separate process under its own `timeout`, so that one
# hang or crash loses only itself; all are clamped to an overall budget (BUDGET_S, default 460 s
# from the start of this script) so that the summary table is always printed, last:
#   env           versions line, bf16 matmul peak (8192^3, median of 10), device copy bandwidth
#   das           [1] DAS scoring, Qwen3-4B shape, bf16, 32 x 512, against a full-vocab log-softmax
#   sft_cap_fp16  [2] LoRA SFT at the colab settings in fp16 under a 15 GiB cap, seq 512/1024/2048
#   sft_cap_4bit  [2] the same with sft.load_in_4bit (bitsandbytes NF4) through load_base_model
#   fp16_bf16     [4] 10 SFT steps at 2 x 4 x 1024 in fp16 then bf16, non-finite-loss guard on
#   eval_gen      [3] greedy_batch decoding at batch 1, 16, 50 against the memory-bandwidth bound
# Files in $OUT (7, within the device tool's 8): env.json das.json sft_cap_fp16.json
# sft_cap_4bit.json fp16_bf16_steps.json eval_gen.json gpu_checks.log (every section's full output).
set -u
TINY=""
[ "${1:-}" = "--tiny" ] && TINY="--tiny"
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
PY=${PY:-python3}
BUDGET_S=${BUDGET_S:-460}
T_START=$(date +%s)
WORK=$(mktemp -d)
STATUS="$WORK/status.tsv"
LOG="$OUT/gpu_checks.log"
: >"$LOG"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1 \
  TOKENIZERS_PARALLELISM=false TQDM_DISABLE=1 PYTHONDONTWRITEBYTECODE=1
export HF_HOME="$WORK/hf" HF_DATASETS_CACHE="$WORK/hf/datasets"

elapsed() { echo $(( $(date +%s) - T_START )); }

if [ -z "${SKIP_INSTALL:-}" ]; then
  t0=$(date +%s)
  PIP="$PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site"
  WHEELS=${WHEELS:-.whl}
  ls -l "$WHEELS"/*.whl >>"$LOG" 2>&1
  if ! $PIP "$WHEELS"/*.whl >>"$LOG" 2>&1; then
    echo "wheel install failed as a batch: installing one by one" | tee -a "$LOG"
    for w in "$WHEELS"/*.whl; do $PIP "$w" >>"$LOG" 2>&1 || echo "WHEEL FAILED: $w" | tee -a "$LOG"; done
  fi
  export PYTHONPATH=/tmp/site:$PWD
  printf 'install\t0\t%s\n' $(( $(date +%s) - t0 )) >>"$STATUS"
else
  export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD
fi

# section NAME LIMIT_S COMMAND...: run COMMAND under timeout, clamped to what is left of the budget.
section() {
  local name=$1 limit=$2
  shift 2
  if [ -n "${SECTIONS:-}" ] && [[ " $SECTIONS " != *" $name "* ]]; then
    return
  fi
  local left=$(( BUDGET_S - $(elapsed) - 15 ))
  (( left < limit )) && limit=$left
  if (( limit < 20 )); then
    echo "== $name: SKIPPED, time budget spent (t+$(elapsed)s)" | tee -a "$LOG"
    printf '%s\tskipped\t0\n' "$name" >>"$STATUS"
    return
  fi
  echo "== $name (limit ${limit}s, t+$(elapsed)s): $*" | tee -a "$LOG"
  local t0
  t0=$(date +%s)
  timeout -k 10 "$limit" "$@" 2>&1 | tee -a "$LOG" >"$WORK/$name.log"
  local rc=${PIPESTATUS[0]}
  grep -v -E "it/s\]|s/it\]|^\{'(loss|train_runtime)'|[Ww]arning|warn\(" "$WORK/$name.log" | tail -n "${TAIL_LINES:-5}" | cut -c1-300
  (( rc == 124 || rc == 137 )) && echo "-- $name: TIMED OUT after ${limit}s" | tee -a "$LOG"
  echo "-- $name: rc=$rc, $(( $(date +%s) - t0 ))s" | tee -a "$LOG"
  printf '%s\t%s\t%s\n' "$name" "$rc" $(( $(date +%s) - t0 )) >>"$STATUS"
}

STEPS=()
[ -n "$TINY" ] && STEPS=(--stability-steps 3)
section env 90 "$PY" bench/gpu_ceilings.py $TINY --out "$OUT/env.json"
section das 150 "$PY" bench/das_scoring.py --gpu $TINY --ceilings "$OUT/env.json" --out "$OUT/das.json"
section sft_cap_fp16 180 "$PY" bench/sft_t4.py --mode cap $TINY --out "$OUT/sft_cap_fp16.json"
section sft_cap_4bit 180 "$PY" bench/sft_t4.py --mode cap --four-bit $TINY --out "$OUT/sft_cap_4bit.json"
section fp16_bf16 150 "$PY" bench/sft_t4.py --mode stability $TINY ${STEPS[@]+"${STEPS[@]}"} --out "$OUT/fp16_bf16_steps.json"
section eval_gen 150 "$PY" bench/eval_generation_gpu.py $TINY --ceilings "$OUT/env.json" --out "$OUT/eval_gen.json"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,temperature.gpu --format=csv,noheader >>"$LOG" 2>&1
fi
echo "total: $(elapsed)s" | tee -a "$LOG"
"$PY" bench/gpu_summary.py "$OUT" "$STATUS" 2>&1 | tee -a "$LOG"
rm -rf "$WORK"
