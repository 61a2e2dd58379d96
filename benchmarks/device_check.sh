#!/usr/bin/env bash
# pml_htl's check on one CUDA GPU, in at most 8 minutes:
#   1. the test suite with CUDA as the test device:
#        PML_HTL_TEST_DEVICE=cuda python -m pytest -q -x tests/
#   2. python -m benchmarks.perf --device cuda --quick
#   3. python -m benchmarks.compare --quick --device cuda
# then the report docs/perf_cuda.md: the GPU, driver, CUDA, torch, faiss and PML
# versions, the date, the commit, each step's exit status and wall time, the
# test summary line, perf.py's table and compare.py's summary lines.
#
#   bash benchmarks/device_check.sh [--out REPORT.md]
#   bash benchmarks/device_check.sh --dry-run [--out REPORT.md]
#
# --dry-run checks the script itself on the CPU with tiny steps (a few tests,
# perf --quick --repeats 1, a one-iteration compare); its report goes to
# results/device_check_dry_run.md unless --out says otherwise, never to docs/.
#
# What it expects: a checkout of this repository (any working directory) and
# python3. The Python it uses: $PML_HTL_PYTHON if set; else the active virtual
# environment; else the repository's .venv/; else python3 when it already has
# every needed module; else a new .venv/ (python3 -m venv
# --system-site-packages, so a torch already installed is reused).
# `pip install -e .[dev]` runs only when a needed module is missing, and needs
# a package index then; on a machine without one, install beforehand. For
# faiss on the GPU, install the gpu extra beforehand (README, "GPU"); the
# report says which faiss build ran.
#
# Time: every step runs under its own `timeout` (seconds: environment 20,
# tests 200, perf 120, compare 110; venv 60 and setup 240 only when needed),
# cut so that all of them end within PML_HTL_CHECK_BUDGET seconds of the start
# (default 450; the report takes a few more, 8 minutes in all at most): a
# setup that installs leaves less time to the last steps. Environment
# variables PML_HTL_CHECK_TIMEOUT_<STEP> (STEP: VENV, SETUP, ENVIRONMENT, TESTS,
# PERF, COMPARE) change one step's limit; PML_HTL_CHECK_PYTEST_ARGS replaces the
# pytest arguments. A step that fails or runs out of time is recorded and the
# next one runs; the report is always written. Exit status: 0 when every step
# passed, 1 otherwise, 2 for bad arguments.

set -u

usage() { sed -n '2,37p' "$0" | sed 's/^# \{0,1\}//'; }

DRY_RUN=0
OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
    --dry-run) DRY_RUN=1 ;;
    --out)
        [ $# -ge 2 ] || { echo "error: --out needs a path" >&2; exit 2; }
        OUT=$2
        shift
        ;;
    -h | --help) usage; exit 0 ;;
    *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

for var in ${!PML_HTL_CHECK_*}; do
    case "$var" in
    PML_HTL_CHECK_PYTEST_ARGS) continue ;;
    PML_HTL_CHECK_BUDGET | PML_HTL_CHECK_TIMEOUT_VENV | PML_HTL_CHECK_TIMEOUT_SETUP) ;;
    PML_HTL_CHECK_TIMEOUT_ENVIRONMENT | PML_HTL_CHECK_TIMEOUT_TESTS) ;;
    PML_HTL_CHECK_TIMEOUT_PERF | PML_HTL_CHECK_TIMEOUT_COMPARE) ;;
    *) echo "error: unknown setting $var (see --help)" >&2; exit 2 ;;
    esac
    case "${!var}" in
    '' | *[!0-9]*) echo "error: $var must be a whole number of seconds, got '${!var}'" >&2; exit 2 ;;
    esac
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -n "$OUT" ]; then
    case "$OUT" in /*) ;; *) OUT="$PWD/$OUT" ;; esac
elif [ "$DRY_RUN" = 1 ]; then
    OUT="$ROOT/results/device_check_dry_run.md"
else
    OUT="$ROOT/docs/perf_cuda.md"
fi
cd "$ROOT" || exit 1

START=$(date +%s)
DEADLINE=$((START + ${PML_HTL_CHECK_BUDGET:-450}))
WORK=$(mktemp -d "${TMPDIR:-/tmp}/device_check.XXXXXX")
echo "$START" >"$WORK/started"
: >"$WORK/steps.tsv"
FAILED=0
# logs without progress-bar frames, output kept when a step is killed, and the
# checkout's pml_htl whatever is installed
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

if [ "$DRY_RUN" = 1 ]; then
    DEVICE=cpu
    PYTEST_ARGS=${PML_HTL_CHECK_PYTEST_ARGS:--q -x tests/benchmarks/test_faiss_device.py}
    PERF_ARGS=(--device cpu --quick --repeats 1)
    COMPARE_ARGS=(--quick --device cpu --losses htl --epochs 1 --iters-per-epoch 1
        --batch-size 16 --glyph-samples 4 --embedding-size 8)
else
    DEVICE=cuda
    PYTEST_ARGS=${PML_HTL_CHECK_PYTEST_ARGS:--q -x tests/}
    PERF_ARGS=(--device cuda --quick)
    COMPARE_ARGS=(--quick --device cuda)
fi
# import names of what the tests and benchmarks need (setup.py's dev extra)
NEEDED=(torch torchvision pytorch_metric_learning numpy tqdm scipy matplotlib PIL
    fontTools faiss pytest record_keeper tensorboard)

record() { # name, status, seconds, limit, command
    printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$WORK/steps.tsv"
    case "$2" in 0) ;; *) FAILED=1 ;; esac
    echo "[device_check] $1: $2 (${3} s)"
}

# run_step NAME LIMIT COMMAND...: COMMAND under `timeout`, its output in NAME.log
run_step() {
    local name=$1 limit=$2
    shift 2
    local var="PML_HTL_CHECK_TIMEOUT_$(echo "$name" | tr '[:lower:]' '[:upper:]')"
    limit=${!var:-$limit}
    local left=$((DEADLINE - $(date +%s)))
    [ "$limit" -gt "$left" ] && limit=$left
    local shown
    shown=$(printf '%q ' "$@")
    shown=${shown% }
    shown=${shown//"$PY"/python}
    shown=${shown//"$WORK"/\$WORK}
    if [ "$limit" -lt 1 ]; then
        record "$name" "not run (no time left)" 0 0 "$shown"
        return
    fi
    echo "[device_check] $name: $shown (limit ${limit} s)"
    local start end
    start=$(date +%s.%N)
    timeout -k 5 "$limit" "$@" >"$WORK/$name.log" 2>&1
    local rc=$?
    end=$(date +%s.%N)
    record "$name" "$rc" "$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')" \
        "$limit" "$shown"
}

missing_modules() { # PYTHON: prints the NEEDED modules it cannot find
    "$1" -c 'import importlib.util, sys
print(" ".join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))' \
        "${NEEDED[@]}" 2>/dev/null || echo "python-not-working"
}

# ------------------------------------------------------------------ the Python
PY=""
if [ -n "${PML_HTL_PYTHON:-}" ]; then
    PY=$PML_HTL_PYTHON
elif [ -n "${VIRTUAL_ENV:-}" ] && [ -x "$VIRTUAL_ENV/bin/python" ]; then
    PY=$VIRTUAL_ENV/bin/python
elif [ -x "$ROOT/.venv/bin/python" ]; then
    PY=$ROOT/.venv/bin/python
elif command -v python3 >/dev/null && [ -z "$(missing_modules python3)" ]; then
    PY=$(command -v python3)
else
    PY=$ROOT/.venv/bin/python
    run_step venv 60 python3 -m venv --system-site-packages "$ROOT/.venv"
fi
MISSING=$(missing_modules "$PY")
if [ -n "$MISSING" ]; then
    echo "[device_check] missing: $MISSING"
    run_step setup 240 "$PY" -m pip install --progress-bar off -e ".[dev]"
fi

# ------------------------------------------------------------------ the steps
run_step environment 20 "$PY" -m benchmarks.device_report environment "$WORK/env.json"
# shellcheck disable=SC2086  # PYTEST_ARGS is a list of words
run_step tests 200 env PML_HTL_TEST_DEVICE=$DEVICE "$PY" -m pytest $PYTEST_ARGS
run_step perf 120 "$PY" -m benchmarks.perf "${PERF_ARGS[@]}" --out "$WORK/perf.md"
run_step compare 110 "$PY" -m benchmarks.compare "${COMPARE_ARGS[@]}" --out "$WORK/compare"

# ------------------------------------------------------------------ the report
RENDER=(-m benchmarks.device_report render --work "$WORK" --out "$OUT")
[ "$DRY_RUN" = 1 ] && RENDER+=(--dry-run)
if ! timeout 10 "$PY" "${RENDER[@]}" 2>"$WORK/render.log" &&
    ! timeout 10 python3 "${RENDER[@]}" 2>>"$WORK/render.log"; then
    # no Python could write it: the bare facts
    mkdir -p "$(dirname "$OUT")"
    {
        echo "# Device check: the report could not be rendered"
        echo
        echo "$(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)."
        echo "Steps (name, exit status, wall s, limit s, command):"
        echo
        echo '```'
        cat "$WORK/steps.tsv" "$WORK/render.log"
        echo '```'
    } >"$OUT"
    FAILED=1
fi
echo "[device_check] report: $OUT (logs: $WORK)"
exit "$FAILED"
