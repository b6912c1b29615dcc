#!/usr/bin/env bash
# GPU checks for issues 4 and 5, run on a lent GPU machine (see README "Measurements").
# Installs the wheels carried in .whl/ (trl, datasets... are missing on that image), then runs
# the DAS scoring benchmark (Qwen3-4B shape, 32 x 512) and the SFT benchmark (colab settings
# and 16 x 1024). Results go to $OUT (or ./gpu_out).
set -u
OUT=${OUT:-gpu_out}; mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
if ! python3 -c "import pyarrow, sys; sys.exit(int(pyarrow.__version__.split('.')[0]) < 24)" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/opt/*.whl
fi
export PYTHONPATH=/tmp/site:$PWD
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, transformers, peft, trl, datasets; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__, 'trl', trl.__version__, 'datasets', datasets.__version__)" | tee -a "$OUT/gpu.txt"
echo "== DAS scoring (32 x 512) =="
timeout 200 python3 bench/das_scoring.py --gpu --out "$OUT/das_gpu.json" 2>&1 | tee "$OUT/das_gpu.log" | tail -40
echo "== SFT (colab settings, 16 x 1024) =="
timeout 280 python3 bench/sft_throughput.py --gpu --out "$OUT/sft_gpu.json" 2>&1 | tee "$OUT/sft_gpu.log" | grep -v -E "it/s\]|s/it\]" | tail -40
