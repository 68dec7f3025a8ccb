'use strict'
// Shared by every autocannon scenario: the run's data (env vars and files written by the runner), one
// builder per request kind, and run(), which drives autocannon's programmatic API and prints the
// figures the runner reads as one JSON line. Latency is recorded here in microseconds: autocannon's
// own histogram keeps whole milliseconds, too coarse for sub-millisecond reads.
const fs = require('fs')
const path = require('path')
const autocannon = require('autocannon')
const hdr = require('hdr-histogram-js')

const env = (name, dflt) => (process.env[name] ? process.env[name] : dflt)
const POSTS = Number(env('PERF_POSTS', '1')) // post ids 1..POSTS were seeded
const USERS = Number(env('PERF_USERS', '1')) // user ids 1..USERS, emails user<id>@example.com
const PAGES = Number(env('PERF_PAGES', '1')) // deepest page of 20 that ?page= may ask for
const NONCE = env('PERF_NONCE', 'a') // makes sign-up emails unique across runs
const PASSWORD = env('PERF_PASSWORD', 'perf-password')
const DATA = env('PERF_DATA', '.')

function lines (name) {
  const file = path.join(DATA, name)
  if (!fs.existsSync(file)) return []
  return fs.readFileSync(file, 'utf8').split('\n').filter(Boolean)
}
const TAGS = lines('tags.txt')
const TOKENS = lines('tokens.txt')
const CURSORS = lines('cursors.txt')

// mulberry32: a seeded generator, so a run's request sequence repeats.
let state = Number(env('PERF_SEED', '1')) * 1000 + 7
function random () {
  state = (state + 0x6D2B79F5) | 0
  let t = Math.imul(state ^ (state >>> 15), 1 | state)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}
const upTo = (n) => 1 + Math.floor(random() * n)
const pick = (list) => list[Math.floor(random() * list.length)]

const WORDS = ['lorem', 'ipsum', 'dolor', 'sit', 'amet', 'consectetur', 'adipiscing', 'elit', 'sed', 'do',
  'eiusmod', 'tempor', 'incididunt', 'ut', 'labore', 'et', 'dolore', 'magna', 'aliqua', 'enim', 'minim']
function text (length) {
  const out = []
  let size = 0
  while (size < length) {
    const word = pick(WORDS)
    out.push(word)
    size += word.length + 1
  }
  return out.join(' ')
}

// Fresh objects: autocannon's builder writes Content-Length into the headers object it is given.
const jsonType = () => ({ 'content-type': 'application/json' })
const authed = () => ({ 'content-type': 'application/json', authorization: 'Bearer ' + pick(TOKENS) })
const get = (path) => ({ method: 'GET', path })
let signups = 0

const req = {
  health: () => get('/healthz'),
  user: () => get('/api/users/' + upTo(USERS)),
  post: () => get('/api/posts/' + upTo(POSTS)),
  list: () => get('/api/posts'),
  list_page: () => get('/api/posts?page=' + upTo(PAGES)),
  list_cursor: () => get('/api/posts?cursor=' + pick(CURSORS)),
  list_tag: () => get('/api/posts?tag=' + pick(TAGS)),
  user_posts: () => get('/api/users/' + upTo(USERS) + '/posts'),
  tags: () => get('/api/tags'),
  login: () => ({
    method: 'POST', path: '/api/auth/login', headers: jsonType(),
    body: JSON.stringify({ email: 'user' + upTo(USERS) + '@example.com', password: PASSWORD })
  }),
  signup: () => {
    const name = 'a' + NONCE + '_' + process.pid + '_' + (++signups)
    return {
      method: 'POST', path: '/api/users', headers: jsonType(),
      body: JSON.stringify({ email: name + '@example.com', username: name, password: PASSWORD })
    }
  },
  comment: () => ({
    method: 'POST', path: '/api/posts/' + upTo(POSTS) + '/comments', headers: authed(),
    body: JSON.stringify({ body: text(200) })
  }),
  create_post: () => ({
    method: 'POST', path: '/api/posts', headers: authed(),
    body: JSON.stringify({ title: text(60), body: text(1500), tags: [...new Set([pick(TAGS), pick(TAGS), pick(TAGS)].slice(0, upTo(3)))] })
  })
}

// The mixed workload: 90 % reads of every kind, 10 % authenticated writes (comments and posts).
const MIX = [[30, req.post], [15, req.list], [10, req.list_page], [10, req.list_cursor], [10, req.list_tag],
  [10, req.user_posts], [5, req.tags], [8, req.comment], [2, req.create_post]]
req.mixed = () => {
  let roll = upTo(100)
  for (const [weight, build] of MIX) {
    roll -= weight
    if (roll <= 0) return build()
  }
  return MIX[0][1]()
}

function args (argv) {
  const out = { url: 'http://127.0.0.1:8080', connections: 100, duration: 30, rate: 0, workers: 0 }
  for (let i = 0; i < argv.length; i += 2) out[argv[i].replace(/^--/, '')] = argv[i + 1]
  return out
}

// autocannon's rate option is a per-connection budget per second, spent back to back when each second
// starts: one instance at 1,000 req/s over 100 connections offers 100 concurrent requests at every
// second boundary and nothing in between. So the open loop runs GROUPS instances, each with its share
// of the connections and the rate, started 1/GROUPS s apart: the same total rate, in 20 small waves.
const GROUPS = 20

// A request's bytes as autocannon's own builder writes them: request line, Host, keep-alive, the headers,
// Content-Length and the body.
function encode (host, { method, path, headers, body }) {
  let head = `${method} ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: keep-alive\r\n`
  for (const name in headers) head += `${name}: ${headers[name]}\r\n`
  if (body === undefined) return Buffer.from(head + '\r\n')
  const bytes = Buffer.from(body)
  return Buffer.concat([Buffer.from(head + `Content-Length: ${bytes.length}\r\n\r\n`), bytes])
}

// autocannon rebuilds a request that has a setupRequest function on every send, through its general
// builder (defaults merged, a fresh id from hyperid, a deep copy of its context): about 25 µs of the
// tool's CPU per request here, a quarter of what it spends, on the two cores the service has too. Each
// connection's requests after its first are written by encode() instead. This reaches into autocannon's
// client (requestIterator.nextRequest, currentRequest.requestBuffer), which package-lock.json pins;
// tests/test_perf_scripts.py checks every scenario's requests as they arrive. Against the cached `post`,
// alternating 6-s runs: 5,346-6,149 req/s against 4,953-5,267 with the general builder.
function fastRequests (host, build) {
  return (client) => {
    const iterator = client.requestIterator
    if (!iterator || typeof iterator.nextRequest !== 'function') throw new Error('autocannon internals changed: see perf/autocannon/common.js')
    iterator.nextRequest = function () {
      this.currentRequest = { requestBuffer: encode(host, build()) }
      return this.currentRequest
    }
  }
}

// Runs `kind` with the command line's --url --connections --duration [--rate N] (open loop when N > 0).
function run (kind) {
  const a = args(process.argv.slice(2))
  const connections = Number(a.connections)
  const rate = Number(a.rate)
  const build = req[kind]
  const setupClient = fastRequests(new URL(a.url).host, build)
  const groups = rate > 0 ? Math.max(1, Math.min(GROUPS, connections, rate)) : 1
  const share = (total, i) => Math.floor(total / groups) + (i < total % groups ? 1 : 0)
  const latency = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60e6, numberOfSignificantValueDigits: 3 })
  // In the open loop a connection is due every connections/rate seconds; a response slower than that
  // also stands for the requests it held back (HdrHistogram's coordinated-omission correction).
  const interval = rate > 0 ? Math.round(Math.min(connections, rate) / rate * 1e6) : 0
  const record = (client, statusCode, bytes, ms) => {
    const us = Math.max(1, Math.round(ms * 1000))
    if (interval) latency.recordValueWithExpectedInterval(us, interval)
    else latency.recordValue(us)
  }
  const results = []
  const finish = () => {
    const sum = (f) => results.reduce((acc, r) => acc + f(r), 0)
    const status = {}
    for (const r of results) {
      for (const [code, { count }] of Object.entries(r.statusCodeStats)) status[code] = (status[code] || 0) + count
    }
    const percentiles = {}
    for (const p of [50, 75, 90, 95, 99, 99.9, 99.99]) percentiles[String(p)] = latency.getValueAtPercentile(p)
    const out = {
      tool: 'autocannon', requests: sum(r => r.requests.total), sent: sum(r => r.requests.sent),
      // An instance stops at its first one-second tick past the duration, so each one's own rate counts.
      rps: Math.round(sum(r => r.requests.total / r.duration) * 10) / 10,
      duration_s: Math.round(sum(r => r.duration) / groups * 100) / 100, bytes: sum(r => r.throughput.total),
      errors: sum(r => r.errors), timeouts: sum(r => r.timeouts), non2xx: sum(r => r.non2xx), status, rate, groups,
      latency_us: { min: latency.minNonZeroValue, max: latency.maxValue, mean: Math.round(latency.mean * 10) / 10,
        stdev: Math.round(latency.stdDeviation * 10) / 10, percentiles }
    }
    process.stdout.write('PERF_RESULT ' + JSON.stringify(out) + '\n')
  }
  for (let g = 0; g < groups; g++) {
    const opts = {
      url: a.url, connections: share(connections, g), duration: Number(a.duration), timeout: 10,
      requests: [{ setupRequest: (request) => Object.assign(request, { headers: {}, body: undefined }, build()) }],
      setupClient
    }
    if (rate > 0) opts.overallRate = share(rate, g)
    setTimeout(() => {
      const instance = autocannon(opts, (err, result) => {
        if (err) throw err
        results.push(result)
        if (results.length === groups) finish()
      })
      instance.on('response', record)
    }, g * 1000 / groups)
  }
}

module.exports = { req, run }
