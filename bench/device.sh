#!/usr/bin/env bash
# The engine-vs-raw benchmark on a many-core machine, as one short job (e.g. a lent GPU host with
# 16 cores and no network), repeated so that one lucky or unlucky run does not decide the figure.
#
#   bash bench/device.sh [RUNS] [WORKERS]   # defaults: 2 runs, 4 workers, REQUESTS=120000, ROUNDS=3
#
# It needs aiohttp, orjson and pydantic. Where they are missing and there is no network, carry
# wheels for that machine's Python in .whl/ (e.g. `pip download --only-binary=:all:
# --python-version 3.12 -d .whl aiohttp orjson pydantic`); they are installed into a scratch
# directory, nothing system-wide. Each run's output goes to stdout and, when $OUT is set (the
# device tool's result folder), to $OUT/bench_models-RUN.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-2}"
workers="${2:-4}"
requests="${REQUESTS:-120000}"
rounds="${ROUNDS:-3}"
py="${PYTHON:-python3}"
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
if ! "$py" -c "import aiohttp, orjson, pydantic" 2>/dev/null; then
    if ! ls .whl/*.whl >/dev/null 2>&1; then
        echo "error: aiohttp, orjson or pydantic is missing and there are no wheels in .whl/ to install" >&2
        exit 2
    fi
    site="$(mktemp -d)"
    trap 'rm -rf "$site"' EXIT
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" .whl/*.whl
    export PYTHONPATH="$site:$PYTHONPATH"
fi
"$py" -c "import platform, os; print(f'# Python {platform.python_version()}, {os.cpu_count()} cores, {platform.processor() or platform.machine()}')"
for i in $(seq 1 "$runs"); do
    cmd=("$py" bench/bench_models.py --no-local --latency-ms 0 --rounds "$rounds" --workers "$workers" --requests "$requests")
    echo "# run $i: ${cmd[*]}"
    if [ -n "${OUT:-}" ]; then
        "${cmd[@]}" | tee "$OUT/bench_models-$i.txt"
    else
        "${cmd[@]}"
    fi
done
