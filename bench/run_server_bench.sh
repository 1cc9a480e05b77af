#!/usr/bin/env bash
# End-to-end server benchmarks for qaexchange-server over loopback (docs/BENCHMARKS.md, "Server"):
#   rest         REST order submit under wrk (keep-alive; 1, 10, 100 and 400 connections; a paced
#                run) and GET /api/account/{id}
#   ws           WebSocket submit_order -> order_response with bench/ws_bench (full speed, one
#                order in flight per connection, fixed offered rates)
#   hold         1,000 and 10,000 WebSocket sessions subscribed to IF2501 ticker + orderbook while
#                orders trade over REST: server VmRSS and whether the pushes keep flowing
#   rest-rate    REST at 100 connections at offered rates (REST_RATES) on a warmed-up server
#   hold-noping  the same hold with the server's WebSocket pings every hour (a diagnosis; not run
#                by default)
# Every run is bounded in time; the script starts and stops its own server on 127.0.0.1 only.
#
#   bench/run_server_bench.sh [rest] [ws] [hold] [hold-noping]   (default: rest ws hold)
#
# Environment: BUILD (build/release), SERVER, WS_BENCH (binaries; built unless NO_BUILD=1),
# REV (build the server of that commit apart, under OUT, e.g. REV=f413691),
# PORT (18480), DURATION (wrk seconds, 20), WS_DURATION (10), WS_RATES ("1000 4000"),
# HOLD_DURATION (20), HOLD_RATE (REST orders/s during the holds, 50), HOLD_SESSIONS
# ("1000 10000"), PERF=1 (perf record 8 s of the server during the 100-connection REST run, the
# full-speed WebSocket run and each hold, and print where the time goes),
# SERVER_CONFIG (a TOML file for the server instead of --no-config), OUT (raw outputs).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build/release}
SERVER=${SERVER:-$BUILD/src/qaexchange-server}
WS_BENCH=${WS_BENCH:-$BUILD/bench/ws_bench}
LUA=$ROOT/bench/http_order.lua
PORT=${PORT:-18480}
DURATION=${DURATION:-20}
WS_DURATION=${WS_DURATION:-10}
WS_RATES=${WS_RATES:-"1000 4000"}
HOLD_DURATION=${HOLD_DURATION:-20}
HOLD_RATE=${HOLD_RATE:-50}
HOLD_SESSIONS=${HOLD_SESSIONS:-"1000 10000"}
PERF=${PERF:-0}
OUT=${OUT:-$ROOT/build/server-bench/$(date +%Y%m%d-%H%M%S)}
URL=http://127.0.0.1:$PORT

sections=("$@")
[ ${#sections[@]} -gt 0 ] || sections=(rest ws hold)

mkdir -p "$OUT"
exec > >(tee "$OUT/summary.txt") 2>&1

server_rev="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
git -C "$ROOT" diff --quiet HEAD -- src 2>/dev/null || server_rev="$server_rev + uncommitted changes in src/"
if [ "${NO_BUILD:-0}" != 1 ]; then
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
  if [ -n "${REV:-}" ]; then
    # the server of another commit, built apart; ws_bench from this tree
    src="$OUT/src-$REV"
    mkdir -p "$src"
    git -C "$ROOT" archive "$REV" | tar -x -C "$src"
    cmake -S "$src" -B "$src/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
    cmake --build "$src/build" -j2 --target qaexchange-server >/dev/null
    SERVER=$src/build/src/qaexchange-server
    server_rev="$(git -C "$ROOT" rev-parse --short "$REV")"
    cmake --build "$BUILD" -j2 --target ws_bench >/dev/null
  else
    cmake --build "$BUILD" -j2 --target qaexchange-server ws_bench >/dev/null
  fi
fi
command -v wrk >/dev/null || { echo "wrk is missing: run scripts/setup"; exit 1; }

echo "== qaexchange-server benchmarks $(date -u +%FT%TZ)"
echo "server $SERVER (${REV:+REV=}$server_rev)"
echo "machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "server (I/O thread + engine thread) and load generators share these CPUs; raw outputs in $OUT"

SERVER_PID=""
stop_server() {
  [ -n "$SERVER_PID" ] || return 0
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  for _ in $(seq 1 100); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}
trap stop_server EXIT

# Only complete HTTP requests are sent to the server: before 46ac083 a connection closed before its
# first request crashed the server (see docs/BENCHMARKS.md), so no port probes.
start_server() {
  local config=(--no-config)
  [ -z "${SERVER_CONFIG:-}" ] || config=(--config "$SERVER_CONFIG")
  "$SERVER" "${config[@]}" --no-storage --http "127.0.0.1:$PORT" >"$OUT/server-$1.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 100); do
    if curl -s -m 1 "$URL/health" >/dev/null 2>&1; then return 0; fi
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "server exited, see $OUT/server-$1.log"; exit 1; }
    sleep 0.1
  done
  echo "server did not answer /health"
  exit 1
}

check_alive() {
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "!! the server died (see $OUT/server-*.log)"
    exit 1
  fi
}

rss() { awk '/VmRSS/ {print $2 " kB"}' "/proc/$SERVER_PID/status"; }

# CPU time (clock ticks) of the server's I/O thread (the main thread) and engine thread
cpu_ticks() {
  local io=0 eng=0 t v
  for t in /proc/"$SERVER_PID"/task/*; do
    v=$(awk '{print $14 + $15}' "$t/stat" 2>/dev/null || echo 0)
    if [ "${t##*/}" = "$SERVER_PID" ]; then io=$((io + v)); else eng=$((eng + v)); fi
  done
  echo "$io $eng"
}

# cpu_report "IO0 ENG0" SECONDS COUNT [UNIT]: the server's CPU use over a run, per UNIT (request)
cpu_report() {
  local before=$1 secs=$2 n=$3 unit=${4:-request} hz io0 eng0 io1 eng1
  hz=$(getconf CLK_TCK)
  read -r io0 eng0 <<<"$before"
  read -r io1 eng1 <<<"$(cpu_ticks)"
  python3 -c "
io, eng, hz, secs, n = $((io1 - io0)), $((eng1 - eng0)), $hz, float('$secs'), int('$n' or 0)
print('   server CPU: I/O thread %.0f%%, engine thread %.0f%% of a core; %s' % (
    100.0 * io / hz / secs, 100.0 * eng / hz / secs,
    ('%.1f us of server CPU per $unit (I/O %.1f + engine %.1f)' % (1e6 * (io + eng) / hz / n,
     1e6 * io / hz / n, 1e6 * eng / hz / n)) if n else 'nothing counted'))"
}

open_accounts() { # count prefix
  python3 - "$PORT" "$1" "$2" <<'EOF'
import http.client, json, sys
port, n, prefix = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
c = http.client.HTTPConnection("127.0.0.1", port)
ok = 0
for i in range(n):
    body = json.dumps({"user_id": f"{prefix}{i}", "user_name": "bench", "init_cash": 1e12,
                       "account_type": "individual", "password": "x"})
    c.request("POST", "/api/account/open", body, {"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    if r.status in (200, 409):
        ok += 1
    else:
        print("open", prefix + str(i), r.status, data[:200])
c.close()
print(f"accounts: {ok} of {n} open ({prefix}0..{prefix}{n - 1}, init_cash 1e12)")
EOF
}

book_size() {
  curl -s "$URL/api/market/orderbook/IF2501?depth=50" | python3 -c '
import json, sys
d = json.load(sys.stdin)["data"]
print("IF2501 book: %d bid levels (%d lots), %d ask levels (%d lots)" % (len(d["bids"]),
      sum(x["volume"] for x in d["bids"]), len(d["asks"]), sum(x["volume"] for x in d["asks"])))'
}

# perf_profile NAME: records 8 s of the running server (call graphs) and prints the breakdown
perf_profile() {
  local name=$1
  perf record --call-graph dwarf,16384 -F 1000 -p "$SERVER_PID" -o "$OUT/perf-$name.data" \
    -- sleep 8 >/dev/null 2>&1 || { echo "perf record failed"; return 0; }
  perf script -i "$OUT/perf-$name.data" -F tid,ip,sym 2>/dev/null |
    python3 "$OUT/fold.py" "$SERVER_PID" >"$OUT/profile-$name.txt" || true
  perf report -i "$OUT/perf-$name.data" --no-children -g none --sort dso,sym 2>/dev/null |
    grep -v '^#' | grep -v '^$' | head -25 >"$OUT/profile-$name-self.txt" || true
}

cat >"$OUT/fold.py" <<'EOF'
# Folds `perf script -F tid,ip,sym` call stacks of qaexchange-server into what the time is spent on.
import collections, sys
main_tid = sys.argv[1]
samples, cur = [], None
for line in sys.stdin:
    if not line.strip():
        if cur: samples.append(cur)
        cur = None
    elif not line[0].isspace():
        cur = (line.split()[0], [])
    elif cur is not None:
        parts = line.split(None, 1)
        cur[1].append(parts[1].strip() if len(parts) > 1 else '?')
if cur: samples.append(cur)

def has(frames, *names):
    return any(f == n or f.startswith(n + ' ') or f.startswith(n + '.') for f in frames for n in names)

def engine(fr):
    if has(fr, 'json_dumps') and has(fr, 'queue_push'): return 'pushes: json_dumps of push messages'
    if has(fr, 'queue_push'): return 'pushes: queue_push (copy, strlen, realloc)'
    if has(fr, 'flush_pushes', 'deliver'): return 'ring to the I/O thread (deliver)'
    if has(fr, 'engine_emit', 'engine_emit_order', 'flush_touched', 'on_event', 'tick_json', 'orderbook_json'):
        return 'pushes: building push JSON objects'
    if has(fr, 'json_dumps'): return 'responses: json_dumps'
    if has(fr, 'send_json', 'ws_send', 'http_ok', 'codec_order', 'codec_ws_order_response', 'codec_envelope_ok', 'codec_account', 'handle_query'):
        return 'responses: building JSON objects'
    if has(fr, 'engine_apply'): return 'engine_apply (matching, risk, accounts)'
    if has(fr, 'sem_wait', '__new_sem_wait_slow64', 'do_futex_wait'): return 'waiting for requests (sem_wait)'
    if has(fr, 'flush_wake', 'lws_cancel_service'): return 'waking the I/O thread'
    return 'other'

def io(fr):
    if has(fr, 'lws_dll2_add_sorted', '__lws_sul_insert'): return 'lws timers: sorted insert into the sul list (ping/validity timers)'
    if has(fr, 'ws_message'):
        if has(fr, 'json_loadb'): return 'WS rx: json_loadb'
        if has(fr, 'codec_parse_order', 'codec_parse_cancel'): return 'WS rx: codec_parse_order'
        if has(fr, 'service_submit'): return 'WS rx: service_submit (ring, sem_post)'
        return 'WS rx: rest of ws_message'
    if has(fr, 'route_http', 'route_post', 'route_get'):
        if has(fr, 'json_loadb', 'parse_body'): return 'REST rx: json_loadb of the body'
        if has(fr, 'codec_parse_order'): return 'REST rx: codec_parse_order'
        if has(fr, 'service_submit'): return 'REST rx: service_submit (ring, sem_post)'
        return 'REST rx: routing, rest'
    if has(fr, 'write_response'):
        if has(fr, 'lws_write'): return 'REST tx: lws_write of the body (send)'
        return 'REST tx: headers (own send) and transaction completion'
    if has(fr, 'drain_replies'):
        if has(fr, 'deliver_push'): return 'drain: push fan-out (queue items, on_writable)'
        if has(fr, 'respond', 'session_send_text'): return 'drain: responses (copy, on_writable)'
        return 'drain: free, ring pop'
    if has(fr, 'lws_write'): return 'WS tx: lws_write of one message (send)'
    if has(fr, 'callback'): return 'callback: rest'
    if has(fr, 'lws_service_fd_tsi'):
        if has(fr, '__libc_recv', 'recv', '__libc_read', 'read'): return 'lws: recv/read'
        return 'lws: HTTP/WS parsing, bookkeeping'
    return 'lws service loop: poll, rest'

counts, threads = collections.Counter(), collections.Counter()
for tid, fr in samples:
    th = 'I/O' if tid == main_tid else 'engine'
    threads[th] += 1
    counts[(th, engine(fr) if th == 'engine' else io(fr))] += 1
total = max(len(samples), 1)
print(f"{len(samples)} samples: I/O thread {100*threads['I/O']/total:.1f}%, engine thread {100*threads['engine']/total:.1f}%")
for th in ('I/O', 'engine'):
    print(f"  {th} thread:")
    for (t, what), c in sorted(counts.items(), key=lambda x: -x[1]):
        if t == th and c * 200 >= total:
            print(f"    {100*c/total:5.1f}% of all samples ({100*c/max(threads[th],1):5.1f}% of the thread)  {what}")
EOF

run_wrk() { # name conns [env...] ; prints the script's summary lines
  local name=$1 conns=$2 secs=${WRK_SECS:-$DURATION} before load
  shift 2
  load=$(cut -d' ' -f1 /proc/loadavg)
  before=$(cpu_ticks)
  env "$@" CONNS="$conns" wrk -t1 -c"$conns" -d"$secs"s --latency -s "$LUA" "$URL" \
    >"$OUT/wrk-$name.txt" 2>&1 || true
  echo "-- wrk $name: wrk -t1 -c$conns -d${secs}s --latency -s bench/http_order.lua ${*:+($*) }(load average before: $load)"
  grep -E '^(requests|latency us|non-2xx|first bad)' "$OUT/wrk-$name.txt" | sed 's/^/   /'
  [ -n "${NO_CPU:-}" ] || cpu_report "$before" "$secs" "$(awk '/^requests/ {print $2}' "$OUT/wrk-$name.txt")"
  check_alive
}

section_rest() {
  echo
  echo "=== REST: POST /api/order/submit (keep-alive), GET /api/account/{id}"
  start_server rest
  echo "server VmRSS at start: $(rss)"
  open_accounts 1000 B
  WRK_SECS=3 run_wrk warmup 100 >/dev/null
  run_wrk submit-c1 1
  run_wrk submit-c10 10
  if [ "$PERF" = 1 ]; then
    (sleep 4 && perf_profile rest-c100) &
    local perf_job=$!
  fi
  run_wrk submit-c100 100
  if [ "$PERF" = 1 ]; then
    wait "$perf_job" || true
    echo "   profile (8 s during this run):"
    sed 's/^/   /' "$OUT/profile-rest-c100.txt"
  fi
  run_wrk submit-c400 400
  run_wrk submit-c100-paced5000 100 RATE=5000
  run_wrk account-c100 100 MODE=account
  book_size
  echo "server VmRSS after the REST runs: $(rss)"
  stop_server
}

# REST at 100 connections on a server past the growth of its retained orders (three 10-s
# full-speed runs first: each account keeps its last 2,000 orders, so the pools stop growing after
# ~2 M orders), then paced runs at REST_RATES (RATE for the lua script) and one at full speed.
section_rest_rate() {
  echo
  echo "=== REST at offered rates, 100 connections, after warming past the pools' growth"
  start_server rest-rate
  open_accounts 1000 B
  for i in 1 2 3; do WRK_SECS=10 NO_CPU=1 run_wrk "rate-warmup$i" 100 >/dev/null; done
  echo "server VmRSS after the warm-up: $(rss)"
  for r in ${REST_RATES:-60000 70000 80000}; do
    WRK_SECS=10 run_wrk "rate-c100-$r" 100 RATE="$r"
  done
  WRK_SECS=10 run_wrk rate-c100-full 100
  stop_server
}

# run_ws NAME LABEL ARGS...: one ws_bench run with the server's CPU use
run_ws() {
  local name=$1 label=$2 before t0 t1
  shift 2
  echo "-- $label: ws_bench $* (load average before: $(cut -d' ' -f1 /proc/loadavg))"
  before=$(cpu_ticks)
  t0=$(date +%s.%N)
  "$WS_BENCH" --port "$PORT" --server-pid "$SERVER_PID" "$@" >"$OUT/ws-$name.txt" 2>&1 || true
  t1=$(date +%s.%N)
  grep -vE '^  t=' "$OUT/ws-$name.txt" | sed 's/^/   /'
  cpu_report "$before" "$(python3 -c "print($t1 - $t0)")" \
    "$(awk '/^orders sent in the whole run/ {print $NF}' "$OUT/ws-$name.txt")"
}

section_ws() {
  echo
  echo "=== WebSocket: submit_order -> order_response (bench/ws_bench, 16 connections)"
  start_server ws
  local common=(--conns 16 --duration "$WS_DURATION" --warmup 2)
  "$WS_BENCH" --port "$PORT" "${common[@]}" --window 1 --duration 3 >/dev/null 2>&1 || true # warm-up
  if [ "$PERF" = 1 ]; then
    (sleep 5 && perf_profile ws-full) &
    local perf_job=$!
  fi
  run_ws full "full speed" "${common[@]}" --window 32
  if [ "$PERF" = 1 ]; then
    wait "$perf_job" || true
    echo "   profile (8 s during this run):"
    sed 's/^/   /' "$OUT/profile-ws-full.txt"
  fi
  check_alive
  run_ws window1 "one order in flight per connection" "${common[@]}" --window 1
  check_alive
  for r in $WS_RATES; do
    run_ws "rate$r" "offered rate $r/s" "${common[@]}" --rate "$r"
    check_alive
  done
  book_size
  stop_server
}

section_hold() {
  echo
  echo "=== WebSocket sessions held (ticker + orderbook of IF2501) while orders trade over REST at $HOLD_RATE/s"
  start_server hold
  open_accounts 1000 B
  echo "server VmRSS, 0 sessions, idle: $(rss)"
  WRK_SECS=10 run_wrk hold0-trading 10 RATE="$HOLD_RATE"
  echo "server VmRSS, 0 sessions, after 10 s of trading: $(rss)"
  for n in $HOLD_SESSIONS; do
    echo "-- $n sessions: ws_bench --hold $n --duration $HOLD_DURATION, with wrk -c10 RATE=$HOLD_RATE"
    "$WS_BENCH" --port "$PORT" --hold "$n" --prefix "H$n-" --duration "$HOLD_DURATION" \
      --server-pid "$SERVER_PID" >"$OUT/hold-$n.txt" 2>&1 &
    local ws_pid=$!
    for _ in $(seq 1 1200); do
      grep -q '^READY' "$OUT/hold-$n.txt" 2>/dev/null && break
      kill -0 "$ws_pid" 2>/dev/null || break
      sleep 0.1
    done
    if [ "$PERF" = 1 ]; then
      (sleep 5 && perf_profile "hold$n") &
      local perf_job=$!
    fi
    local before t0
    before=$(cpu_ticks)
    t0=$(date +%s.%N)
    NO_CPU=1 WRK_SECS=$((HOLD_DURATION - 2)) run_wrk "hold$n-trading" 10 RATE="$HOLD_RATE"
    wait "$ws_pid" || true
    sed 's/^/   /' "$OUT/hold-$n.txt" | grep -v READY
    cpu_report "$before" "$(python3 -c "print($(date +%s.%N) - $t0)")" \
      "$(sed -n 's/.*, total \([0-9]*\) (.*/\1/p' "$OUT/hold-$n.txt")" "message pushed"
    if [ "$PERF" = 1 ]; then
      wait "$perf_job" || true
      echo "   profile (8 s during this hold):"
      sed 's/^/   /' "$OUT/profile-hold$n.txt"
    fi
    check_alive
    sleep 2
    echo "server VmRSS after the $n sessions closed: $(rss)"
  done
  stop_server
}

# The hold again with the server's WebSocket pings every hour instead of every 5 s (a diagnosis:
# libwebsockets re-arms each session's ping timer in a sorted list, see docs/BENCHMARKS.md).
section_hold_noping() {
  printf '[websocket]\nping_interval_secs = 3600\nidle_timeout_secs = 7200\n' >"$OUT/noping.toml"
  echo
  echo "(server configuration for this hold: $(tr '\n' ' ' <"$OUT/noping.toml"))"
  SERVER_CONFIG="$OUT/noping.toml" section_hold
}

for s in "${sections[@]}"; do
  case $s in
    rest) section_rest ;;
    rest-rate) section_rest_rate ;;
    ws) section_ws ;;
    hold) section_hold ;;
    hold-noping) section_hold_noping ;;
    *) echo "unknown section $s (rest, rest-rate, ws, hold, hold-noping)"; exit 2 ;;
  esac
done
echo
echo "done; raw outputs in $OUT"
