-- wrk script: POST /api/order/submit over keep-alive connections, for many pre-opened accounts.
--
--   wrk -t1 -c100 -d20s --latency -s bench/http_order.lua http://127.0.0.1:PORT
--
-- Environment (all optional):
--   ACCOUNTS  number of accounts, named PREFIX0 .. PREFIX<ACCOUNTS-1>, already opened (1000)
--   PREFIX    account id prefix ("B")
--   RATE      if set, each connection waits after each response so that the whole run offers
--             a little under RATE orders/s (wrk's delay(); the wait does not count in wrk's
--             latency, see docs/BENCHMARKS.md)
--   CONNS     the -c value, needed with RATE (100)
--   MODE      "order" (default) or "account": GET /api/account/{id} instead of submitting
--
-- The flow keeps the IF2501 book bounded and never self-trades: even accounts only BUY, odd
-- accounts only SELL, so consecutive requests alternate BUY/SELL. Of every five orders on a side,
-- two are GFD limit orders that rest a few ticks away from 3800 (bids 3799.2-3800.0, asks
-- 3800.2-3801.0) and three are IOC limit orders priced 2 points through 3800 that take the best
-- resting order of the other side (or are cancelled when that side is empty). The takers
-- outnumber the resting orders, so the book stays at a few orders and nearly every resting
-- order trades: about 0.4 trades per order. Volume 1, prices
-- within 0.1% of 3800 on the 0.2 tick: inside every pre-trade risk limit as long as the accounts
-- have the cash (the run script opens them with 1e12).
--
-- Non-2xx responses and responses without "success":true are counted per thread and printed by
-- done(), with the first one seen.

local accounts = tonumber(os.getenv("ACCOUNTS") or "1000")
local prefix = os.getenv("PREFIX") or "B"
local rate = tonumber(os.getenv("RATE") or "0")
local conns = tonumber(os.getenv("CONNS") or "100")
local mode = os.getenv("MODE") or "order"

if accounts % 2 == 1 then
    accounts = accounts + 1
end

-- wrk's default wrk.resolve() tests each address with a connect() and an immediate close()
-- before the run. qaexchange-server builds before 46ac083 crash on a connection that closes
-- before sending a request (LWS_CALLBACK_CLOSED_HTTP with no session data, see
-- docs/BENCHMARKS.md), so resolve without the test connection.
function wrk.resolve(host, service)
    wrk.addrs = wrk.lookup(host, service)
end

local threads = {}

function setup(thread)
    thread:set("id", #threads)
    table.insert(threads, thread)
end

-- per thread state (each wrk thread has its own Lua state)
counter = 0
non2xx = 0
failed = 0
first_bad = ""

local headers = { ["Content-Type"] = "application/json" }
local path = "/api/order/submit"

function init(args)
    counter = (id or 0) * 7919
end

local function order_body(i)
    local acct = i % accounts
    local buy = acct % 2 == 0
    local k = math.floor(i / 2) % 5 -- 0, 2: resting GFD; 1, 3, 4: crossing IOC
    local r = math.floor(i / 10) % 5 -- 0..4 ticks behind the touch
    local price, tc
    if k == 0 or k == 2 then
        if buy then
            price = 3800.0 - 0.2 * r
        else
            price = 3800.2 + 0.2 * r
        end
        tc = "GFD"
    else
        if buy then
            price = 3802.0
        else
            price = 3798.0
        end
        tc = "IOC"
    end
    return string.format(
        '{"user_id":"%s%d","instrument_id":"IF2501","direction":"%s","offset":"OPEN",' ..
        '"volume":1,"price":%.1f,"order_type":"LIMIT","time_condition":"%s"}',
        prefix, acct, buy and "BUY" or "SELL", price, tc)
end

function request()
    local i = counter
    counter = counter + 1
    if mode == "account" then
        return wrk.format("GET", "/api/account/" .. prefix .. (i % accounts))
    end
    return wrk.format("POST", path, headers, order_body(i))
end

if rate > 0 then
    -- each connection waits on average conns/rate seconds after a response before its next
    -- request; the wait is drawn uniformly from [0, 2 x mean] so that the connections do not
    -- stay in step and send in bursts (with a fixed wait, all of them fire together)
    local gap_ms = conns * 1000.0 / rate
    math.randomseed(os.time())
    function delay()
        return math.floor(2.0 * gap_ms * math.random() + 0.5)
    end
end

function response(status, hdrs, body)
    if status < 200 or status > 299 then
        non2xx = non2xx + 1
        if first_bad == "" then
            first_bad = status .. " " .. string.sub(body or "", 1, 300)
        end
    elseif not string.find(body or "", '"success":true', 1, true) then
        failed = failed + 1
        if first_bad == "" then
            first_bad = status .. " " .. string.sub(body or "", 1, 300)
        end
    end
end

function done(summary, latency, requests)
    local total_non2xx, total_failed = 0, 0
    local bad = ""
    for _, t in ipairs(threads) do
        total_non2xx = total_non2xx + t:get("non2xx")
        total_failed = total_failed + t:get("failed")
        if bad == "" then
            bad = t:get("first_bad")
        end
    end
    local secs = summary.duration / 1e6
    io.write(string.format("requests %d in %.2fs: %.0f req/s; socket errors: connect %d read %d " ..
        "write %d timeout %d\n", summary.requests, secs, summary.requests / secs,
        summary.errors.connect, summary.errors.read, summary.errors.write,
        summary.errors.timeout))
    io.write(string.format("latency us: p50 %d p90 %d p99 %d p99.9 %d max %d mean %.0f\n",
        latency:percentile(50), latency:percentile(90), latency:percentile(99),
        latency:percentile(99.9), latency.max, latency.mean))
    io.write(string.format("non-2xx responses: %d; 2xx without \"success\":true: %d\n",
        total_non2xx, total_failed))
    if bad ~= "" then
        io.write("first bad response: " .. bad .. "\n")
    end
end
