#!/usr/bin/env bash
# ws_bench at several windows against one server (docs/BENCHMARKS.md, "Both targets at once"):
#   WINDOWS="4 6 8 32" bench/ws_windows.sh   (from the repository root, after a release build)
cd "$(dirname "$0")/.."
PORT=18491
./build/release/src/qaexchange-server --no-config --no-storage --http 127.0.0.1:$PORT > "${TMPDIR:-/tmp}/ws_windows-server.log" 2>&1 &
SP=$!
for i in $(seq 1 50); do curl -s -m1 http://127.0.0.1:$PORT/health >/dev/null && break; sleep 0.1; done
for w in ${WINDOWS:-4 8 16 32}; do
  echo "== window $w"
  ./build/release/bench/ws_bench --port $PORT --conns 16 --window $w --duration 10 --warmup 2 --server-pid $SP 2>&1 | grep -vE '^  t='
done
kill -TERM $SP; wait $SP
