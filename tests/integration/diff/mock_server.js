#!/usr/bin/env node
// Throwaway mock DIFF server: the smallest server behaviour the official TianQin JS SDK (tqsdk,
// installed from npm by scripts/setup) needs. It is a protocol reference, not the exchange: the
// real server is QAExchange-C's /ws/diff. See docs/DIFF_CLIENT_NOTES.md for the checklist; every
// "SDK needs" comment below points at the rule it follows.
//
//   node tests/integration/diff/mock_server.js [--port 0] [--bid qaexchange] [--trace]
//
// Prints one line {"event":"listening","port":N,...} on stdout once it accepts connections.
// HTTP: GET /api/market/symbols (bare symbols map), GET /health.
// WebSocket: /ws/diff (any query string, e.g. ?access_token=..., is accepted).
// Logins: any user_id with a non-empty password other than "wrong" (new users get 1,000,000 CNY).
'use strict'

const http = require('http')
const { WebSocketServer } = require('ws')

const args = process.argv.slice(2)
function opt (name, def) {
  const i = args.indexOf('--' + name)
  return i >= 0 ? args[i + 1] : def
}
const PORT = Number(opt('port', '0'))
const BID = opt('bid', 'qaexchange')
const TRACE = args.includes('--trace')
const TRADING_DAY = '20250102'
const NS = 1000000000

// ---------------------------------------------------------------- instruments / symbols document
const INSTRUMENTS = {
  'CFFEX.IF2501': { py: 'hs300,husheng300', name: '沪深300股指2501', product: 'IF', mult: 300, tick: 0.2, pre: 3800.0 },
  'CFFEX.IC2501': { py: 'zz500,zhongzheng500', name: '中证500股指2501', product: 'IC', mult: 200, tick: 0.2, pre: 5500.0 },
  'CFFEX.IH2501': { py: 'sz50,shangzheng50', name: '上证50股指2501', product: 'IH', mult: 300, tick: 0.2, pre: 2600.0 }
}
const MARGIN_RATE = 0.12

function symbolsDocument () {
  // Shape of shinnytech's symbols/latest.json: symbol -> info. The SDK merges these fields into
  // quotes.<symbol> (getQuote) and needs at least `class`; getQuotesByInput also reads py,
  // product_id, instrument_id, expired, underlying_product.
  const doc = {}
  for (const [sym, i] of Object.entries(INSTRUMENTS)) {
    const [ex, ins] = sym.split('.')
    doc[sym] = {
      class: 'FUTURE',
      instrument_id: sym,
      exchange_id: ex,
      ins_id: ins,
      ins_name: i.name,
      product_id: i.product,
      product_short_name: i.product,
      py: i.py,
      price_tick: i.tick,
      price_decs: 1,
      volume_multiple: i.mult,
      max_limit_order_volume: 10000,
      max_market_order_volume: 10000,
      min_limit_order_volume: 1,
      min_market_order_volume: 1,
      delivery_year: 2025,
      delivery_month: 1,
      expire_datetime: 1737100800,
      expired: false,
      trading_time: { day: [['09:30:00', '11:30:00'], ['13:00:00', '15:00:00']], night: [] },
      sort_key: sym,
      last_price: i.pre,
      pre_settlement: i.pre
    }
  }
  return doc
}

// ---------------------------------------------------------------- exchange state (shared)
const quotes = {}
for (const [sym, i] of Object.entries(INSTRUMENTS)) {
  quotes[sym] = {
    instrument_id: sym,
    datetime: '2025-01-02 09:30:00.000000',
    last_price: i.pre,
    ask_price1: i.pre + i.tick,
    ask_volume1: 0,
    bid_price1: i.pre - i.tick,
    bid_volume1: 0,
    highest: i.pre,
    lowest: i.pre,
    open: i.pre,
    close: '-',
    average: i.pre,
    volume: 0,
    amount: 0,
    open_interest: 0,
    pre_open_interest: 0,
    pre_close: i.pre,
    pre_settlement: i.pre,
    pre_volume: 0,
    settlement: '-',
    upper_limit: Math.round(i.pre * 1.1 / i.tick) * i.tick,
    lower_limit: Math.round(i.pre * 0.9 / i.tick) * i.tick,
    volume_multiple: i.mult,
    price_tick: i.tick
  }
}
const trades = [] // market trades: { sym, price, volume, ts_ns }
const users = {} // user_id -> { password, account, positions, orders, trades }
const books = {} // sym -> resting orders [{ user, order }]
let seq = 0
let clock = Date.UTC(2025, 0, 2, 1, 30, 0) * 1e6 // ns, advances 1 s per event (deterministic)

function nowNs () { clock += NS; return clock }

function newUser (userId, password) {
  return {
    password,
    account: {
      user_id: userId, currency: 'CNY', pre_balance: 1000000, deposit: 0, withdraw: 0,
      static_balance: 1000000, close_profit: 0, commission: 0, premium: 0, position_profit: 0,
      float_profit: 0, balance: 1000000, margin: 0, frozen_margin: 0, frozen_commission: 0,
      frozen_premium: 0, available: 1000000, risk_ratio: 0
    },
    positions: {},
    orders: {},
    trades: {}
  }
}

function position (u, sym) {
  if (!u.positions[sym]) {
    const [ex, ins] = sym.split('.')
    u.positions[sym] = {
      exchange_id: ex, instrument_id: ins, volume_long_today: 0, volume_long_his: 0, volume_long: 0,
      volume_short_today: 0, volume_short_his: 0, volume_short: 0, open_price_long: 0,
      open_price_short: 0, open_cost_long: 0, open_cost_short: 0, position_price_long: 0,
      position_price_short: 0, position_cost_long: 0, position_cost_short: 0, last_price: quotes[sym].last_price,
      float_profit_long: 0, float_profit_short: 0, float_profit: 0, position_profit_long: 0,
      position_profit_short: 0, position_profit: 0, margin_long: 0, margin_short: 0, margin: 0
    }
  }
  return u.positions[sym]
}

function recompute (u) {
  // Open-only bookkeeping, good enough for a protocol mock (no closing, no commission).
  let margin = 0
  let pp = 0
  for (const [sym, p] of Object.entries(u.positions)) {
    const m = INSTRUMENTS[sym].mult
    const last = quotes[sym].last_price
    p.last_price = last
    p.volume_long = p.volume_long_today + p.volume_long_his
    p.volume_short = p.volume_short_today + p.volume_short_his
    p.float_profit_long = (last * p.volume_long * m) - p.open_cost_long
    p.float_profit_short = p.open_cost_short - (last * p.volume_short * m)
    p.float_profit = p.float_profit_long + p.float_profit_short
    p.position_profit_long = p.float_profit_long
    p.position_profit_short = p.float_profit_short
    p.position_profit = p.float_profit
    p.position_cost_long = p.open_cost_long
    p.position_cost_short = p.open_cost_short
    p.position_price_long = p.open_price_long
    p.position_price_short = p.open_price_short
    p.margin_long = p.open_cost_long * MARGIN_RATE
    p.margin_short = p.open_cost_short * MARGIN_RATE
    p.margin = p.margin_long + p.margin_short
    margin += p.margin
    pp += p.position_profit
  }
  const a = u.account
  a.margin = margin
  a.position_profit = pp
  a.float_profit = pp
  a.balance = a.static_balance + a.close_profit - a.commission - a.premium + pp
  a.available = a.balance - a.margin - a.frozen_margin - a.frozen_commission - a.frozen_premium
  a.risk_ratio = a.balance > 0 ? a.margin / a.balance : 0
}

function fill (u, order, price, volume, ts) {
  const sym = order.exchange_id + '.' + order.instrument_id
  const m = INSTRUMENTS[sym].mult
  const p = position(u, sym)
  if (order.direction === 'BUY') {
    p.volume_long_today += volume
    p.open_cost_long += price * volume * m
    p.open_price_long = p.open_cost_long / ((p.volume_long_today + p.volume_long_his) * m)
  } else {
    p.volume_short_today += volume
    p.open_cost_short += price * volume * m
    p.open_price_short = p.open_cost_short / ((p.volume_short_today + p.volume_short_his) * m)
  }
  order.volume_left -= volume
  if (order.volume_left === 0) order.status = 'FINISHED'
  const tradeId = 'T' + String(++seq).padStart(20, '0')
  // SDK getTradesByOrder filters trades on order_id; trade_date_time is epoch ns.
  u.trades[tradeId] = {
    user_id: order.user_id, trade_id: tradeId, order_id: order.order_id,
    exchange_trade_id: tradeId, exchange_id: order.exchange_id, instrument_id: order.instrument_id,
    direction: order.direction, offset: order.offset, price, volume, trade_date_time: ts, commission: 0
  }
}

function match (u, order) {
  const sym = order.exchange_id + '.' + order.instrument_id
  const book = books[sym] || (books[sym] = [])
  const crosses = (r) => r.order.direction !== order.direction && (order.price_type === 'ANY' ||
    (order.direction === 'BUY' ? r.order.limit_price <= order.limit_price : r.order.limit_price >= order.limit_price))
  for (;;) {
    if (order.volume_left === 0) break
    const cands = book.filter(crosses)
    if (cands.length === 0) break
    cands.sort((a, b) => order.direction === 'BUY' ? a.order.limit_price - b.order.limit_price : b.order.limit_price - a.order.limit_price)
    const rest = cands[0]
    const price = rest.order.limit_price
    const vol = Math.min(order.volume_left, rest.order.volume_left)
    const ts = nowNs()
    fill(u, order, price, vol, ts)
    fill(users[rest.user], rest.order, price, vol, ts)
    if (rest.order.volume_left === 0) book.splice(book.indexOf(rest), 1)
    const q = quotes[sym]
    q.last_price = price
    q.volume += vol
    q.amount += price * vol * INSTRUMENTS[sym].mult
    q.open_interest += vol
    q.highest = Math.max(q.highest, price)
    q.lowest = Math.min(q.lowest, price)
    q.average = q.amount / (q.volume * INSTRUMENTS[sym].mult)
    q.datetime = new Date(ts / 1e6 + 8 * 3600 * 1000).toISOString().replace('T', ' ').replace('Z', '000')
    trades.push({ sym, price, volume: vol, ts })
    recompute(users[rest.user])
  }
  if (order.volume_left > 0) {
    if (order.price_type === 'ANY' || order.time_condition === 'IOC') {
      order.status = 'FINISHED'
      order.last_msg = 'remainder cancelled'
    } else {
      book.push({ user: order.user_id, order })
    }
  }
  recompute(u)
  refreshBookQuote(sym)
}

function refreshBookQuote (sym) {
  const q = quotes[sym]
  const book = books[sym] || []
  const bids = book.filter(r => r.order.direction === 'BUY').map(r => r.order.limit_price)
  const asks = book.filter(r => r.order.direction === 'SELL').map(r => r.order.limit_price)
  q.bid_price1 = bids.length ? Math.max(...bids) : '-'
  q.bid_volume1 = book.filter(r => r.order.direction === 'BUY' && r.order.limit_price === q.bid_price1).reduce((s, r) => s + r.order.volume_left, 0)
  q.ask_price1 = asks.length ? Math.min(...asks) : '-'
  q.ask_volume1 = book.filter(r => r.order.direction === 'SELL' && r.order.limit_price === q.ask_price1).reduce((s, r) => s + r.order.volume_left, 0)
}

function klines (sym, durNs, viewWidth) {
  // K-line id = ts_ms * 1e6 / duration_ns (SPEC 6). Bars from the mock's trades; when there are
  // none, one flat bar at the previous settlement so a chart always gets data.
  const bars = {}
  const list = trades.filter(t => t.sym === sym)
  if (list.length === 0) list.push({ price: INSTRUMENTS[sym].pre, volume: 0, ts: clock })
  for (const t of list) {
    const id = Math.floor(t.ts / durNs)
    const b = bars[id]
    if (!b) {
      bars[id] = { datetime: id * durNs, open: t.price, high: t.price, low: t.price, close: t.price, volume: t.volume, open_oi: 0, close_oi: 0 }
    } else {
      b.high = Math.max(b.high, t.price)
      b.low = Math.min(b.low, t.price)
      b.close = t.price
      b.volume += t.volume
    }
  }
  const ids = Object.keys(bars).map(Number).sort((a, b) => a - b).slice(-viewWidth)
  const data = {}
  for (const id of ids) data[id] = bars[id]
  return { last_id: ids[ids.length - 1], trading_day_start_id: ids[0], trading_day_end_id: ids[ids.length - 1], data, first_id: ids[0] }
}

// ---------------------------------------------------------------- merge-patch helpers
const clone = (x) => JSON.parse(JSON.stringify(x))
const isObj = (x) => x !== null && typeof x === 'object' && !Array.isArray(x)

// RFC 7386 patch turning `from` into `to` (undefined when equal).
function diff (from, to) {
  if (!isObj(from) || !isObj(to)) return JSON.stringify(from) === JSON.stringify(to) ? undefined : clone(to)
  const patch = {}
  for (const k of Object.keys(from)) if (!(k in to)) patch[k] = null
  for (const k of Object.keys(to)) {
    if (!(k in from)) { patch[k] = clone(to[k]); continue }
    const d = diff(from[k], to[k])
    if (d !== undefined) patch[k] = d
  }
  return Object.keys(patch).length ? patch : undefined
}

// ---------------------------------------------------------------- sessions
const sessions = new Set()

function view (s) {
  // The session's business snapshot (SPEC 6 tree).
  const v = { ins_list: s.insList.join(','), quotes: {}, klines: {}, charts: {}, mdhis_more_data: false }
  for (const sym of s.insList) if (quotes[sym]) v.quotes[sym] = quotes[sym]
  for (const [id, c] of Object.entries(s.charts)) {
    const sym = c.ins_list.split(',')[0]
    if (!INSTRUMENTS[sym]) continue
    const k = klines(sym, c.duration, c.view_width)
    v.klines[sym] = v.klines[sym] || {}
    v.klines[sym][String(c.duration)] = { last_id: k.last_id, trading_day_start_id: k.trading_day_start_id, trading_day_end_id: k.trading_day_end_id, data: k.data }
    v.charts[id] = { left_id: k.first_id, right_id: k.last_id, more_data: false, ready: true, state: c }
  }
  if (s.user) {
    const u = users[s.user]
    // SDK needs (isLogined): trade.<user_name>.session.trading_day truthy and
    // trade.<user_name>.trade_more_data === false; the key is the user_name sent in req_login.
    v.trade = {
      [s.user]: {
        user_id: s.user,
        trading_day: TRADING_DAY,
        session: { user_id: s.user, trading_day: TRADING_DAY, max_order_id: seq },
        trade_more_data: false,
        accounts: { CNY: u.account },
        positions: u.positions,
        orders: u.orders,
        trades: u.trades
      }
    }
  }
  return v
}

function send (s, obj) {
  const text = JSON.stringify(obj)
  if (TRACE) process.stderr.write('mock >> ' + text + '\n')
  s.ws.send(text)
}

function flush (s) {
  // peek_message / rtn_data: answer a held peek only when something changed; one rtn_data per peek.
  if (!s.peeking) return
  const now = view(s)
  const patch = diff(s.sent, now)
  if (patch === undefined && s.notifies.length === 0) return
  const data = []
  if (patch !== undefined) data.push(patch)
  // SDK gotcha: a data element holding `notify` is removed whole before merging, so notifies go
  // in their own element(s), never together with trade/quotes changes.
  for (const n of s.notifies) data.push({ notify: n })
  s.notifies = []
  s.sent = clone(now)
  s.peeking = false
  send(s, { aid: 'rtn_data', data })
}

function flushAll () { for (const s of sessions) flush(s) }

let notifySeq = 0
function notify (s, code, level, content) {
  s.notifies.push({ ['N' + (++notifySeq)]: { type: 'MESSAGE', level, code, content } })
}

function onMessage (s, msg) {
  switch (msg.aid) {
    case 'peek_message':
      s.peeking = true // idempotent: several peeks before one rtn_data are one peek
      break
    case 'req_login': {
      const name = String(msg.user_name || '')
      const pw = String(msg.password || '')
      if (!name || !pw || pw === 'wrong' || (users[name] && users[name].password !== pw)) {
        notify(s, 9001, 'ERROR', 'login failed: bad user_name or password')
        break
      }
      if (!users[name]) users[name] = newUser(name, pw)
      s.user = name
      recompute(users[name])
      notify(s, 1000, 'INFO', 'login ok, bid ' + (msg.bid || '') + ', user ' + name)
      break
    }
    case 'subscribe_quote':
      s.insList = String(msg.ins_list || '').split(',').filter(Boolean) // replaces the list
      break
    case 'set_chart':
      if (!msg.view_width) delete s.charts[msg.chart_id]
      else s.charts[msg.chart_id] = { chart_id: msg.chart_id, ins_list: String(msg.ins_list), duration: Number(msg.duration), view_width: Number(msg.view_width) }
      break
    case 'insert_order': {
      if (!s.user) { notify(s, 9002, 'ERROR', 'not logged in'); break }
      const u = users[s.user]
      const id = String(msg.order_id || '')
      const sym = msg.exchange_id + '.' + msg.instrument_id
      if (!id || u.orders[id]) { notify(s, 3003, 'ERROR', 'duplicate or empty order_id ' + id); break }
      const order = {
        seqno: ++seq, user_id: s.user, order_id: id, exchange_order_id: 'X' + seq,
        exchange_id: msg.exchange_id, instrument_id: msg.instrument_id, direction: msg.direction,
        offset: msg.offset, volume_orign: msg.volume, volume_left: msg.volume,
        price_type: msg.price_type, limit_price: msg.limit_price === null ? 0 : msg.limit_price,
        volume_condition: msg.volume_condition || 'ANY', time_condition: msg.time_condition || 'GFD',
        insert_date_time: nowNs(), status: 'ALIVE', last_msg: ''
      }
      u.orders[id] = order
      if (!INSTRUMENTS[sym] || !(msg.volume > 0)) {
        // SDK gotcha: a rejected order must still appear as FINISHED under the client's order_id,
        // otherwise the SDK's local placeholder stays ALIVE forever.
        order.status = 'FINISHED'
        order.last_msg = 'rejected'
        notify(s, 1007, 'ERROR', 'order rejected: ' + id)
        break
      }
      match(u, order)
      break
    }
    case 'cancel_order': {
      if (!s.user) break
      const o = users[s.user].orders[msg.order_id]
      if (!o || o.status !== 'ALIVE') { notify(s, 3004, 'ERROR', 'cannot cancel ' + msg.order_id); break }
      o.status = 'FINISHED'
      o.last_msg = 'cancelled'
      const sym = o.exchange_id + '.' + o.instrument_id
      books[sym] = (books[sym] || []).filter(r => r.order !== o)
      refreshBookQuote(sym)
      break
    }
    case 'req_transfer': {
      if (!s.user) break
      const a = users[s.user].account
      const amt = Number(msg.amount)
      if (amt > 0) a.deposit += amt
      else a.withdraw -= amt
      a.static_balance = a.pre_balance + a.deposit - a.withdraw
      recompute(users[s.user])
      break
    }
    default:
      notify(s, 9003, 'WARNING', 'unsupported aid ' + msg.aid)
  }
  flushAll()
}

// ---------------------------------------------------------------- transport
const server = http.createServer((req, res) => {
  const path = req.url.split('?')[0]
  if (req.method === 'GET' && path === '/api/market/symbols') {
    // SDK needs the bare map (no {success,data} envelope): it iterates `for (s in data)`.
    res.writeHead(200, { 'Content-Type': 'application/json; charset=utf-8' })
    res.end(JSON.stringify(symbolsDocument()))
  } else if (req.method === 'GET' && path === '/health') {
    res.writeHead(200, { 'Content-Type': 'application/json' })
    res.end('{"status":"ok"}')
  } else {
    res.writeHead(404, { 'Content-Type': 'application/json' })
    res.end('{"error":"not found"}')
  }
})

const wss = new WebSocketServer({ noServer: true })
server.on('upgrade', (req, socket, head) => {
  if (req.url.split('?')[0] !== '/ws/diff') { socket.destroy(); return }
  wss.handleUpgrade(req, socket, head, (ws) => {
    const s = { ws, peeking: false, sent: {}, notifies: [], user: null, insList: [], charts: {} }
    sessions.add(s)
    ws.on('message', (data) => {
      const text = data.toString()
      if (TRACE) process.stderr.write('mock << ' + text + '\n')
      let msg
      try { msg = JSON.parse(text) } catch (e) { return }
      onMessage(s, msg)
    })
    ws.on('close', () => sessions.delete(s))
    // SDK needs: the server speaks first. tqsdk-js sends peek_message only after it receives a
    // message, never on open, so an unsolicited first message starts the peek chain
    // (open-trade-gateway sends rtn_brokers here).
    send(s, { aid: 'rtn_brokers', brokers: [BID] })
  })
})

server.listen(PORT, '127.0.0.1', () => {
  const port = server.address().port
  process.stdout.write(JSON.stringify({ event: 'listening', port, http: `http://127.0.0.1:${port}`, ws: `ws://127.0.0.1:${port}/ws/diff` }) + '\n')
})
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0))
