#!/usr/bin/env node
// Test client for QAExchange-C's DIFF server, built on the official TianQin JS SDK (npm `tqsdk`,
// installed with `ws` by scripts/setup into tests/integration/diff/node_modules). It drives the
// SDK's own API (login, getQuote, setChart, insertOrder, cancelOrder, ...) and prints one JSON
// line per observed result on stdout, so a Python unittest can assert on values.
//
//   node tests/integration/diff/tq_client.js --server http://127.0.0.1:PORT [options] < script.json
//
// Options (each overrides the same key of the script):
//   --server URL        HTTP base; symbols URL = URL/api/market/symbols, ws = ws://HOST/ws/diff
//   --ws URL            DIFF websocket URL for market data and trading (default from --server)
//   --symbols-url URL   symbols document URL (default from --server)
//   --broker-list-url U fetch the broker list from U instead of synthesising {bid: {url: ws}}
//   --bid NAME          broker id sent in req_login (default qaexchange)
//   --user ID --password PW   one account (adds to script.accounts)
//   --timeout SEC       default timeout of every wait (default 10)
//   --script FILE       read the script from FILE ("-" = stdin; default: stdin when not a TTY)
//   --trace             log every websocket frame to stderr
//
// Script (JSON): {"accounts":[{"user_id":"u1","password":"p"}], "timeout":10, "actions":[...]}.
// Every action may carry "account": user_id (default: the first account) and "timeout": seconds.
//   {"do":"login"}                        wait until the SDK's isLogined(); prints event "login"
//   {"do":"login","expect":"fail"}        wait for an ERROR/WARNING notify; prints "login_failed"
//   {"do":"subscribe","symbols":[S,...]}  tqsdk.getQuote(S) (subscribes through subscribe_quote)
//   {"do":"wait_quote","symbol":S,"match":{...}}            prints event "quote"
//   {"do":"set_chart","symbol":S,"duration":NS,"view_width":N,"chart_id":ID}
//   {"do":"wait_klines","symbol":S,"duration":NS,"min_bars":1,"match_last":{...}} prints "klines"
//   {"do":"insert_order","ref":R,"symbol":"EX.INS" | "exchange_id","instrument_id",
//        "direction","offset","volume","price_type","limit_price"}  prints "order_sent"
//   {"do":"cancel_order","ref":R | "order_id":ID}              prints "cancel_sent"
//   {"do":"wait_order","ref":R,"match":{"status":"FINISHED","volume_left":0}}  prints "order"
//   {"do":"wait_trades","ref":R,"volume":N}                    prints "trades"
//   {"do":"wait_position","symbol":S,"match":{...}}            prints "position"
//   {"do":"wait_account","match":{...}}                        prints "account"
//   {"do":"wait_notify","match":{"code":1000}}                 prints "notify_matched"
//   {"do":"transfer","amount":N}                               req_transfer (amount>0 = deposit)
//   {"do":"snapshot"}            prints "snapshot": account, positions, orders, trades
//   {"do":"sleep","ms":N}
// match: {"field": value} (numbers compare within 1e-9 relative) or {"field": {"gt"|"gte"|"lt"|
//   "lte"|"ne"|"eq"|"approx"|"tol"|"exists": ...}}.
// Also printed: "ready" (symbols loaded), every "notify", "done" at the end.
// Exit status: 0 done, 2 a wait timed out, 1 any other failure; the last stdout line is then
// {"event":"error","kind":"timeout"|"failure","waiting_for":...,"message":...}.
'use strict'

const util = require('util')
const fs = require('fs')
const path = require('path')

// The SDK writes console.log('close', event) etc.; keep stdout for our JSON lines only.
for (const k of ['log', 'info', 'warn', 'error', 'debug']) {
  console[k] = (...a) => process.stderr.write('[tqsdk] ' + util.format(...a) + '\n')
}
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')

const NODE_MODULES = path.join(__dirname, 'node_modules')
let TQSDK, WebSocket
try {
  // package.json "main" of tqsdk is an ES module (dist/esm); Node's require needs the UMD build.
  TQSDK = require(path.join(NODE_MODULES, 'tqsdk', 'dist', 'umd', 'tqsdk-nocache.js'))
  WebSocket = require(path.join(NODE_MODULES, 'ws'))
} catch (e) {
  process.stderr.write('tq_client: tqsdk/ws not installed; run scripts/setup (npm ci --prefix tests/integration/diff)\n' + e.message + '\n')
  process.exit(1)
}
const BROKER_LIST_URL = 'https://files.shinnytech.com/broker-list.json' // hard-coded in the SDK

class Fail extends Error {
  constructor (kind, message, waitingFor) { super(message); this.kind = kind; this.waitingFor = waitingFor }
}

// ------------------------------------------------------------------ configuration
function parseArgs (argv) {
  const o = {}
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--trace') { o.trace = true; continue }
    if (a === '-h' || a === '--help') { o.help = true; continue }
    if (!a.startsWith('--') || i + 1 >= argv.length) throw new Fail('failure', 'bad argument ' + a)
    o[a.slice(2).replace(/-/g, '_')] = argv[++i]
  }
  return o
}

function loadConfig () {
  const cli = parseArgs(process.argv.slice(2))
  if (cli.help) {
    process.stdout.write(fs.readFileSync(__filename, 'utf8').split('\n').filter(l => l.startsWith('//')).map(l => l.slice(3)).join('\n') + '\n')
    process.exit(0)
  }
  let script = {}
  const src = cli.script || (process.stdin.isTTY ? null : '-')
  if (src) {
    const text = fs.readFileSync(src === '-' ? 0 : src, 'utf8')
    if (text.trim()) script = JSON.parse(text)
  }
  const cfg = Object.assign({ bid: 'qaexchange', timeout: 10, accounts: [], actions: [] }, script)
  for (const k of ['server', 'ws', 'symbols_url', 'broker_list_url', 'bid']) if (cli[k] !== undefined) cfg[k] = cli[k]
  if (cli.timeout !== undefined) cfg.timeout = Number(cli.timeout)
  if (cli.trace) cfg.trace = true
  if (cli.user) cfg.accounts = [{ user_id: cli.user, password: cli.password || '' }].concat(cfg.accounts.filter(a => a.user_id !== cli.user))
  if (cfg.server) {
    const base = cfg.server.replace(/\/+$/, '')
    if (!cfg.symbols_url) cfg.symbols_url = base + '/api/market/symbols'
    if (!cfg.ws) cfg.ws = base.replace(/^http/, 'ws') + '/ws/diff'
  }
  if (!cfg.ws || !cfg.symbols_url) throw new Fail('failure', 'need --server (or --ws and --symbols-url)')
  if (!cfg.actions.some(a => a.do === 'login')) {
    cfg.actions = cfg.accounts.map(a => ({ do: 'login', account: a.user_id })).concat(cfg.actions)
  }
  return cfg
}

// ------------------------------------------------------------------ helpers
function tracingWebSocket (trace) {
  if (!trace) return WebSocket
  let n = 0
  return class TracingWebSocket extends WebSocket {
    constructor (url, ...rest) {
      super(url, ...rest)
      const id = ++n
      process.stderr.write(`ws#${id} open ${url}\n`)
      this.addEventListener('message', (e) => process.stderr.write(`ws#${id} << ${e.data}\n`))
      this.addEventListener('close', (e) => process.stderr.write(`ws#${id} closed ${e.code}\n`))
      this._traceId = id
    }

    send (data, ...rest) {
      process.stderr.write(`ws#${this._traceId} >> ${data}\n`)
      return super.send(data, ...rest)
    }
  }
}

function fetchJson (url) {
  return fetch(url, { headers: { Accept: 'application/json; charset=utf-8' } }).then((res) => {
    if (!res.ok) throw new Error(`GET ${url}: HTTP ${res.status}`)
    return res.json()
  })
}

// Plain copy of an SDK object: Quote keeps last_price / pre_settlement behind getters.
function plain (obj) {
  if (obj === null || obj === undefined) return obj
  const o = JSON.parse(JSON.stringify(obj))
  if ('_last_price' in o) { o.last_price = obj.last_price; delete o._last_price }
  if ('_pre_settlement' in o) { o.pre_settlement = obj.pre_settlement; delete o._pre_settlement }
  return o
}

function numEq (a, b, tol) {
  if (typeof a !== 'number' || typeof b !== 'number') return false
  return Math.abs(a - b) <= (tol !== undefined ? tol : 1e-9 * Math.max(1, Math.abs(b)))
}

function matches (obj, spec) {
  if (!obj) return false
  for (const [k, want] of Object.entries(spec || {})) {
    const v = obj[k]
    if (want !== null && typeof want === 'object' && !Array.isArray(want)) {
      for (const [op, x] of Object.entries(want)) {
        if (op === 'tol') continue
        const ok = op === 'eq' ? (typeof x === 'number' ? numEq(v, x) : v === x)
          : op === 'ne' ? (typeof x === 'number' ? !numEq(v, x) : v !== x)
            : op === 'gt' ? v > x : op === 'gte' ? v >= x : op === 'lt' ? v < x : op === 'lte' ? v <= x
              : op === 'approx' ? numEq(v, x, want.tol !== undefined ? want.tol : 1e-6)
                : op === 'exists' ? (v !== undefined) === Boolean(x) : false
        if (!ok) return false
      }
    } else if (typeof want === 'number') {
      if (!numEq(v, want)) return false
    } else if (v !== want) {
      return false
    }
  }
  return true
}

// ------------------------------------------------------------------ the client
class Client {
  constructor (cfg) {
    this.cfg = cfg
    this.orders = {} // ref -> { user_id, order_id }
    this.notifies = [] // every notify seen, in order
    this.waiters = new Set()
    const ws = cfg.ws
    const tq = this.tq = new TQSDK({
      symbolsServerUrl: cfg.symbols_url,
      wsQuoteUrl: ws,
      // The SDK downloads the broker list from a fixed shinnytech URL; answer it locally (or from
      // --broker-list-url) with our bid -> { url: ws }. Everything else is a plain GET.
      requestMethod: (url) => {
        if (url === BROKER_LIST_URL) {
          if (cfg.broker_list_url) return fetchJson(cfg.broker_list_url)
          return Promise.resolve({ [cfg.bid]: { url: ws } })
        }
        return fetchJson(url)
      }
    }, { WebSocket: tracingWebSocket(cfg.trace), reconnectInterval: 1000, reconnectMaxTimes: 2 })
    this.ready = this.event('ready', 'the symbols document (' + cfg.symbols_url + ') and the broker list')
    this.brokers = this.event('rtn_brokers', 'the broker list')
    tq.on('error', (e) => this.abort(new Fail('failure', 'SDK error: ' + (e && e.message ? e.message : String(e)))))
    tq.on('notify', (n) => {
      const rec = Object.assign({ event: 'notify' }, plain(n))
      this.notifies.push(rec)
      out(rec)
      this.poke()
    })
    tq.on('rtn_data', () => this.poke())
    tq.quotesWs.on('death', (e) => this.abort(new Fail('failure', 'market-data websocket gave up reconnecting: ' + (e && e.msg))))
  }

  event (name, what) {
    return new Promise((resolve) => this.tq.once(name, resolve)).then(() => what)
  }

  abort (err) {
    for (const w of this.waiters) w.reject(err)
    if (this.waiters.size === 0) this.pendingError = err
  }

  poke () { for (const w of [...this.waiters]) w.check() }

  // Resolve with check()'s first truthy result; re-evaluated on every rtn_data / notify.
  waitFor (what, timeoutSec, check) {
    return new Promise((resolve, reject) => {
      if (this.pendingError) { reject(this.pendingError); return }
      const w = {
        check: () => {
          let r
          try { r = check() } catch (e) { w.reject(e); return }
          if (r) { w.done(); resolve(r) }
        },
        reject: (e) => { w.done(); reject(e) },
        done: () => { clearTimeout(w.timer); this.waiters.delete(w) }
      }
      w.timer = setTimeout(() => w.reject(new Fail('timeout', `timed out after ${timeoutSec}s waiting for ${what}`, what)), timeoutSec * 1000)
      this.waiters.add(w)
      w.check()
    })
  }

  account (a) {
    const id = a.account || (this.cfg.accounts[0] && this.cfg.accounts[0].user_id)
    const acc = this.cfg.accounts.find(x => x.user_id === id)
    if (!acc) throw new Fail('failure', `action ${a.do}: unknown account ${id}`)
    return { bid: this.cfg.bid, user_id: acc.user_id, password: acc.password }
  }

  async run () {
    const t0 = this.cfg.timeout
    for (const a of this.cfg.actions) {
      const t = a.timeout !== undefined ? a.timeout : t0
      await this.step(a, t)
    }
  }

  async step (a, t) {
    const tq = this.tq
    switch (a.do) {
      case 'login': {
        const acc = this.account(a)
        const seen = this.notifies.length
        if (!tq.addAccount(acc)) throw new Fail('failure', `addAccount(${acc.user_id}) refused (bid ${acc.bid} not in broker list?)`)
        const ref = tq._getAccountRef(acc)
        ref.ws.on('death', (e) => this.abort(new Fail('failure', `trade websocket of ${acc.user_id} gave up reconnecting: ${e && e.msg}`)))
        tq.login(acc)
        const failed = () => this.notifies.slice(seen).find(n => n.user_id === acc.user_id && (n.level === 'ERROR' || n.level === 'WARNING'))
        if (a.expect === 'fail') {
          const n = await this.waitFor(`a failure notify for the login of ${acc.user_id}`, t, () => tq.isLogined(acc) ? { ok: true } : failed())
          if (n.ok) throw new Fail('failure', `login of ${acc.user_id} succeeded but was expected to fail`)
          out({ event: 'login_failed', user_id: acc.user_id, notify: n })
          return
        }
        const r = await this.waitFor(`login of ${acc.user_id} (trade.${acc.user_id}.session.trading_day and trade_more_data === false)`, t,
          () => tq.isLogined(acc) ? { ok: true } : (failed() ? { fail: failed() } : null))
        if (r.fail) throw new Fail('failure', `login of ${acc.user_id} failed: ${JSON.stringify(r.fail)}`)
        const user = tq.get({ name: 'user', bid: acc.bid, user_id: acc.user_id })
        out({ event: 'login', user_id: acc.user_id, session: plain(user.session), trading_day: user.trading_day, account: plain(tq.getAccount(acc)) })
        return
      }
      case 'subscribe': {
        const missing = []
        for (const s of a.symbols) {
          const q = tq.getQuote(s) // subscribes only symbols present in the symbols document
          if (!q || !q.class) missing.push(s)
        }
        if (missing.length) throw new Fail('failure', `not in the symbols document ${this.cfg.symbols_url}: ${missing.join(',')} (it must be a bare {symbol: {class, ...}} map)`)
        out({ event: 'subscribed', symbols: a.symbols })
        return
      }
      case 'wait_quote': {
        const spec = a.match || { datetime: { ne: '' } }
        const q = await this.waitFor(`quote ${a.symbol} matching ${JSON.stringify(spec)}`, t, () => {
          const q = tq.getByPath(['quotes', a.symbol])
          return q && q.datetime && matches(plain(q), spec) ? q : null
        })
        out(Object.assign({ event: 'quote', symbol: a.symbol }, plain(q)))
        return
      }
      case 'set_chart': {
        const chart = tq.setChart({ chart_id: a.chart_id, symbol: a.symbol, duration: a.duration, view_width: a.view_width || 10 })
        out({ event: 'chart_sent', chart_id: chart.state.chart_id, symbol: a.symbol, duration: a.duration })
        return
      }
      case 'wait_klines': {
        const min = a.min_bars || 1
        const res = await this.waitFor(`at least ${min} kline(s) of ${a.symbol} duration ${a.duration}` + (a.match_last ? ' with last bar ' + JSON.stringify(a.match_last) : ''), t, () => {
          const ks = tq.getByPath(['klines', a.symbol, String(a.duration)])
          if (!ks || !ks.data) return null
          const ids = Object.keys(ks.data).filter(k => /^\d+$/.test(k)).map(Number).sort((x, y) => x - y)
          if (ids.length < min) return null
          const bars = ids.map(id => Object.assign({ id }, plain(ks.data[id])))
          if (a.match_last && !matches(bars[bars.length - 1], a.match_last)) return null
          return { ks, bars }
        })
        const charts = tq.getByPath(['charts']) || {}
        const chart = Object.values(charts).find(c => c && c.state && c.state.ins_list === a.symbol && Number(c.state.duration) === Number(a.duration))
        out({
          event: 'klines', symbol: a.symbol, duration: a.duration, last_id: res.ks.last_id,
          trading_day_start_id: res.ks.trading_day_start_id, trading_day_end_id: res.ks.trading_day_end_id,
          chart: chart ? { left_id: chart.left_id, right_id: chart.right_id, more_data: chart.more_data } : null,
          bars: res.bars
        })
        return
      }
      case 'insert_order': {
        const acc = this.account(a)
        let ex = a.exchange_id
        let ins = a.instrument_id
        if (a.symbol) [ex, ins] = a.symbol.split('.')
        const order = tq.insertOrder(Object.assign({
          exchange_id: ex, instrument_id: ins, direction: a.direction, offset: a.offset || 'OPEN',
          price_type: a.price_type || 'LIMIT', limit_price: a.limit_price, volume: a.volume
        }, acc))
        if (!order) throw new Fail('failure', `insertOrder refused by the SDK: ${acc.user_id} is not logged in`)
        if (a.ref) this.orders[a.ref] = { user_id: acc.user_id, order_id: order.order_id }
        out({ event: 'order_sent', ref: a.ref || null, user_id: acc.user_id, order_id: order.order_id })
        return
      }
      case 'cancel_order': {
        const o = this.orderRef(a)
        tq.cancelOrder({ bid: this.cfg.bid, user_id: o.user_id, order_id: o.order_id })
        out({ event: 'cancel_sent', ref: a.ref || null, user_id: o.user_id, order_id: o.order_id })
        return
      }
      case 'wait_order': {
        const o = this.orderRef(a)
        const spec = a.match || { status: 'FINISHED' }
        const order = await this.waitFor(`order ${a.ref || ''} ${o.order_id} of ${o.user_id} matching ${JSON.stringify(spec)}`, t, () => {
          // The SDK's own placeholder (status ALIVE, volume_orign) exists before the server
          // answers; require a server field (insert_date_time or exchange_order_id) as well.
          const x = tq.getOrder({ bid: this.cfg.bid, user_id: o.user_id, order_id: o.order_id })
          return x && (x.insert_date_time !== undefined || x.exchange_order_id !== undefined) && matches(x, spec) ? x : null
        })
        out(Object.assign({ event: 'order', ref: a.ref || null, user_id: o.user_id }, plain(order)))
        return
      }
      case 'wait_trades': {
        const o = this.orderRef(a)
        const want = a.volume
        const res = await this.waitFor(`trades of order ${a.ref || ''} ${o.order_id} totalling ${want} lot(s)`, t, () => {
          const ts = tq.getTradesByOrder({ bid: this.cfg.bid, user_id: o.user_id, order_id: o.order_id }) || {}
          const list = Object.entries(ts).map(([k, v]) => Object.assign({ trade_key: k }, plain(v)))
          const vol = list.reduce((s, x) => s + Number(x.volume || 0), 0)
          return (want === undefined ? list.length > 0 : vol === want) ? { list, vol } : null
        })
        out({ event: 'trades', ref: a.ref || null, user_id: o.user_id, order_id: o.order_id, volume: res.vol, trades: res.list })
        return
      }
      case 'wait_position': {
        const acc = this.account(a)
        const spec = a.match || {}
        const p = await this.waitFor(`position ${a.symbol} of ${acc.user_id} matching ${JSON.stringify(spec)}`, t,
          () => { const p = tq.getPosition(Object.assign({ symbol: a.symbol }, acc)); return p && matches(p, spec) ? p : null })
        out(Object.assign({ event: 'position', user_id: acc.user_id, symbol: a.symbol }, plain(p)))
        return
      }
      case 'wait_account': {
        const acc = this.account(a)
        const spec = a.match || {}
        const x = await this.waitFor(`account ${acc.user_id} (accounts.CNY) matching ${JSON.stringify(spec)}`, t,
          () => { const x = tq.getAccount(acc); return x && Object.keys(x).length && matches(x, spec) ? x : null })
        out(Object.assign({ event: 'account', user_id: acc.user_id }, plain(x)))
        return
      }
      case 'wait_notify': {
        const spec = a.match || {}
        const n = await this.waitFor(`a notify matching ${JSON.stringify(spec)}`, t, () => this.notifies.find(n => matches(n, spec)))
        out(Object.assign({}, n, { event: 'notify_matched' }))
        return
      }
      case 'transfer': {
        const acc = this.account(a)
        tq.transfer(Object.assign({ amount: a.amount, bank_id: a.bank_id || '', bank_password: a.bank_password || '', future_account: acc.user_id, future_password: acc.password, currency: a.currency || 'CNY' }, acc))
        out({ event: 'transfer_sent', user_id: acc.user_id, amount: a.amount })
        return
      }
      case 'snapshot': {
        const acc = this.account(a)
        out({
          event: 'snapshot', user_id: acc.user_id, account: plain(tq.getAccount(acc)),
          positions: plain(tq.getPositions(acc)), orders: plain(tq.getOrders(acc)), trades: plain(tq.getTrades(acc))
        })
        return
      }
      case 'sleep':
        await new Promise(resolve => setTimeout(resolve, a.ms || 0))
        return
      default:
        throw new Fail('failure', 'unknown action ' + JSON.stringify(a))
    }
  }

  orderRef (a) {
    if (a.ref) {
      const o = this.orders[a.ref]
      if (!o) throw new Fail('failure', `${a.do}: unknown order ref ${a.ref}`)
      return o
    }
    if (a.order_id) return { user_id: this.account(a).user_id, order_id: a.order_id }
    throw new Fail('failure', `${a.do} needs "ref" or "order_id"`)
  }

  close () {
    try { this.tq.quotesWs.close() } catch (e) {}
    for (const k of Object.keys(this.tq.trade_accounts)) {
      try { this.tq.trade_accounts[k].ws.close() } catch (e) {}
    }
  }
}

async function main () {
  let client = null
  try {
    const cfg = loadConfig()
    client = new Client(cfg)
    Promise.all([client.ready, client.brokers]).then(() => { client.started = true; client.poke() })
    await client.waitFor('the symbols document (' + cfg.symbols_url + ') and the broker list', cfg.timeout, () => client.started)
    out({ event: 'ready', symbols: Object.keys(client.tq.quotesInfo).length })
    await client.run()
    out({ event: 'done' })
    client.close()
    process.exit(0)
  } catch (e) {
    const kind = e instanceof Fail ? e.kind : 'failure'
    out({ event: 'error', kind, waiting_for: e.waitingFor || null, message: e.message })
    process.stderr.write('tq_client: ' + e.message + '\n')
    if (client) client.close()
    process.exit(kind === 'timeout' ? 2 : 1)
  }
}

main()
