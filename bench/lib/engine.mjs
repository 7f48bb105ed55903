// @ts-check
/**
 * The connection engine of the load generator; runs in a worker thread and is
 * driven by messages from bench/loadgen.mjs (open a group of connections, run
 * a stage on groups, close a group, answer a query).
 *
 * Cheap per operation, so that the generator costs less than the server:
 * - replies are read with `onread` into one static buffer per thread (no
 *   Buffer per read, no stream 'data' machinery) and parsed byte by byte in
 *   place; only a reply that straddles two reads is copied (into a per
 *   connection carry buffer);
 * - commands are encoded into a large write pool that only moves forward (a
 *   fresh pool when it is full, so bytes a pending write still refers to are
 *   never overwritten) and each connection's batch leaves in one write;
 * - in-flight commands live in per-connection typed-array rings (kind, send
 *   time, tag), so there is no object, closure or promise per command;
 * - with a pipeline depth P > 2 a connection is topped up only when half of
 *   its window has come back, so one write carries about P/2 commands.
 *
 * Invariant: the pool bytes between `wstart` and `wpos` all belong to the one
 * connection being driven; `flush(c)` sends them before another is touched.
 */
import net from 'node:net'
import tls from 'node:tls'
import { parentPort } from 'node:worker_threads'
import { Hist } from './hist.mjs'
import { mono } from './clock.mjs'

const ROLE_PROD = 1 // put into its tube (or `use` a random tube before each put)
const ROLE_WRD = 2 // reserve-with-timeout 0, delete; stops when the tube is empty
const ROLE_WBLK = 3 // blocking reserve, delete
const ROLE_CYC = 4 // put, reserve-with-timeout 0, delete (own tube or shared)
const ROLE_PD = 5 // put, delete the id it got
const ROLE_IDLE = 6 // use + watch, then nothing
/** @type {Record<string, number>} */
export const ROLES = { prod: ROLE_PROD, wrd: ROLE_WRD, wblk: ROLE_WBLK, cyc: ROLE_CYC, pd: ROLE_PD, idle: ROLE_IDLE }

const K_PUT = 1
const K_RES0 = 2
const K_RESB = 3
const K_DEL = 4
const K_USE = 5 // setup
const K_WATCH = 6 // setup
const K_IGN = 7 // setup
const K_USEP = 8 // `use` before a put into a random tube
const K_AUTH = 9 // setup: `auth <token>` (tsbeanstalkd --auth-file)

const LF = 10
const CR = 13

/** @param {number} v */
function pow2ge(v) {
  let p = 1
  while (p < v) p *= 2
  return p
}

// ------------------------------------------------------------------ config

const cfg = {
  host: '127.0.0.1',
  port: 11300,
  body: 100,
  ttr: 120,
  pri: 1024,
  maxSecs: 120,
  connectBatch: 200,
  /** TLS instead of plain TCP: the port and the CA (PEM) to trust; 0: plain. */
  tlsPort: 0,
  tlsCa: '',
  /** A token to send as `auth` before the setup commands; '': none. */
  auth: '',
  /** --tags: put tags (tsbeanstalkd --extensions); each '#' becomes a hex digit of a per-job counter. */
  tags: '',
}

/** The client side of every TLS connection of this thread (built once, at init). */
let secureContext = /** @type {tls.SecureContext | null} */ (null)

/** The put command with the constant header, body and CRLF, ready to copy. */
let PUTCMD = Buffer.alloc(0)
let PUTHDR = 0 // header length inside PUTCMD (offset of the body)
let BODY = Buffer.alloc(0)
/** Offsets of the '#' digits of --tags inside PUTCMD, most significant first. */
let TAG_DIGITS = /** @type {number[]} */ ([])
/** The per-job counter behind them (a random start: keys unique across runs and threads). */
let tagSeq = 0

function buildPut() {
  BODY = Buffer.alloc(cfg.body)
  for (let i = 0; i < cfg.body; i++) BODY[i] = 97 + (i % 26)
  const tags = cfg.tags ? ` ${cfg.tags.replaceAll(',', ' ')}` : ''
  const hdr = Buffer.from(`put ${cfg.pri} 0 ${cfg.ttr} ${cfg.body}${tags}\r\n`, 'latin1')
  PUTHDR = hdr.length
  PUTCMD = Buffer.concat([hdr, BODY, Buffer.from('\r\n')])
  TAG_DIGITS = []
  for (let i = 0; i < hdr.length; i++) if (hdr[i] === 0x23) TAG_DIGITS.push(i)
  tagSeq = Math.floor(Math.random() * 2 ** 40)
}

/** Writes the next job number into the '#' digits of the put at pool[at]. @param {number} at */
function stampTags(at) {
  let t = tagSeq++
  for (let i = TAG_DIGITS.length - 1; i >= 0; i--) {
    const q = Math.floor(t / 16)
    pool[at + /** @type {number} */ (TAG_DIGITS[i])] = /** @type {number} */ (HEX[t - q * 16])
    t = q
  }
}

const S_RES0 = Buffer.from('reserve-with-timeout 0\r\n', 'latin1')
const S_RESB = Buffer.from('reserve\r\n', 'latin1')
const S_DEL = Buffer.from('delete ', 'latin1')
const HEX = Buffer.from('0123456789abcdef', 'latin1')

// ----------------------------------------------------------- write pool

const POOL = 1 << 20
let pool = Buffer.allocUnsafeSlow(POOL)
let wpos = 0
let wstart = 0

/** Makes room for `need` more bytes of the current connection's batch. @param {number} need */
function room(need) {
  if (wpos + need <= pool.length) return
  const used = wpos - wstart
  const np = Buffer.allocUnsafeSlow(Math.max(POOL, 2 * (used + need)))
  pool.copy(np, 0, wstart, wpos)
  pool = np
  wstart = 0
  wpos = used
}

/** @param {Buffer} b */
function putBytes(b) {
  room(b.length)
  if (b.length <= 32) {
    for (let i = 0; i < b.length; i++) pool[wpos + i] = /** @type {number} */ (b[i])
  } else b.copy(pool, wpos)
  wpos += b.length
}

/** Decimal digits of a non-negative integer (room already made). @param {number} v */
function putNum(v) {
  let d = 1
  for (let p = 10; p <= v; p *= 10) d++
  let i = wpos + d - 1
  do {
    const q = Math.floor(v / 10)
    pool[i--] = 48 + (v - q * 10)
    v = q
  } while (v > 0)
  wpos += d
}

// ----------------------------------------------------------- counters

const G = {
  putsSent: 0,
  putsOk: 0,
  putsReplied: 0,
  resSent: 0,
  resOk: 0,
  jobsDone: 0,
  timeouts: 0,
  errors: 0,
  bodyErr: 0,
  cmdsDone: 0,
  deadConns: 0,
  lost: 0,
  ringFull: 0,
}
const rtt = new Hist()
const e2e = new Hist()
/** @type {string[]} */
const errSamples = []

/** @param {string} what @param {Buffer} buf @param {number} s @param {number} e */
function reportErr(what, buf, s, e) {
  G.errors++
  if (errSamples.length < 5) errSamples.push(`${what}: '${buf.toString('latin1', s, Math.min(e, s + 80)).replace(/\r?\n$/, '')}'`)
}

/** Time of the event being handled (mono ms). */
let now = 0

// ----------------------------------------------------------- connections

/** Shared read buffer: `onread` callbacks parse it synchronously. */
const RBUF = Buffer.allocUnsafeSlow(256 * 1024)

let openPending = 0 // connections whose setup replies are outstanding

class Conn {
  /**
   * @param {Group} g @param {number} idx global index within the group (across threads)
   * @param {number} ringcap
   */
  constructor(g, idx, ringcap) {
    this.g = g
    this.role = g.role
    this.idx = idx
    this.ready = false
    this.dead = false
    this.setupLeft = 0
    const cap = pow2ge(ringcap)
    this.mask = cap - 1
    this.rk = new Uint8Array(cap)
    this.rt = new Float64Array(cap)
    this.rtag = new Float64Array(cap)
    this.rh = 0
    this.rtl = 0
    this.inflight = 0
    this.dq = new Float64Array(cap)
    this.dqh = 0
    this.dqt = 0
    /** @type {Buffer | null} */
    this.carry = null
    this.carryLen = 0
    this.quota = 0
    this.putsSent = 0
    this.owed = 0
    this.lastPut = false
    this.drained = false
    this.resOut = false
    this.tube = 0
    const self = this
    if (secureContext !== null) {
      // No `onread` for TLS sockets: each decrypted chunk is copied into RBUF and parsed as a read.
      this.sock = tls.connect({ host: cfg.host, port: cfg.tlsPort, servername: 'localhost', secureContext })
      this.sock.setNoDelay(true)
      this.sock.on('data', (/** @type {Buffer} */ chunk) => {
        for (let off = 0; off < chunk.length && !self.dead; off += RBUF.length) {
          const n = chunk.copy(RBUF, 0, off)
          onRead(self, n)
        }
      })
    } else {
      this.sock = net.connect({
        host: cfg.host,
        port: cfg.port,
        noDelay: true,
        onread: {
          buffer: RBUF,
          callback(n) {
            onRead(self, n)
            return true
          },
        },
      })
    }
    this.sock.on('error', (e) => connDead(self, e.message))
    this.sock.on('close', () => connDead(self, 'closed by server'))
  }
}

/**
 * @typedef {{
 *   gid: number, role: number, count: number, total: number, idxBase: number, pipe: number,
 *   tubes: number, prefix: string, randTubes: number, conns: Conn[], opened: number,
 *   ringcap: number, resolve: ((v: unknown) => void) | null, t0: number
 * }} Group
 */
/** @type {Map<number, Group>} */
const groups = new Map()

/** @param {Conn} c @param {string} why */
function connDead(c, why) {
  if (c.dead) return
  c.dead = true
  if (!c.ready) openPending--
  G.deadConns++
  if (errSamples.length < 5) errSamples.push(`connection lost: ${why}`)
  c.sock.destroy()
  if (stage) stage.check()
  const g = c.g
  if (g.resolve) openMore(g)
}

/** @param {Conn} c @param {number} kind @param {number} tag */
function rpush(c, kind, tag) {
  if (c.inflight > c.mask) throw new Error('internal: in-flight ring overflow')
  const s = c.rtl & c.mask
  c.rk[s] = kind
  c.rt[s] = now
  c.rtag[s] = tag
  c.rtl++
  c.inflight++
}

/** @param {Conn} c */
function flush(c) {
  if (wpos > wstart) {
    if (!c.dead) c.sock.write(pool.subarray(wstart, wpos))
    wstart = wpos
  }
}

/** @param {Group} g @param {number} t */
function tubeName(g, t) {
  return `${g.prefix}${t}`
}

/** @param {Conn} c @param {string} s @param {number} kind */
function queueRaw(c, s, kind) {
  putBytes(Buffer.from(s, 'latin1'))
  rpush(c, kind, 0)
  c.setupLeft++
}

/** Setup commands of a new connection (beanstalkd `use`/`watch`/`ignore`). @param {Conn} c */
function queueSetup(c) {
  const g = c.g
  const i = c.idx
  if (cfg.auth !== '') queueRaw(c, `auth ${cfg.auth}\r\n`, K_AUTH)
  if ((c.role === ROLE_PROD || c.role === ROLE_CYC || c.role === ROLE_PD) && g.randTubes === 0) {
    c.tube = i % g.tubes
    queueRaw(c, `use ${tubeName(g, c.tube)}\r\n`, K_USE)
  }
  if (c.role === ROLE_CYC) {
    queueRaw(c, `watch ${tubeName(g, c.tube)}\r\n`, K_WATCH)
    queueRaw(c, 'ignore default\r\n', K_IGN)
  }
  if (c.role === ROLE_WRD || c.role === ROLE_WBLK) {
    const W = g.total
    for (let t = 0; t < g.tubes; t++) {
      const mine = W >= g.tubes ? t === i % g.tubes : t % W === i % W
      if (mine) queueRaw(c, `watch ${tubeName(g, t)}\r\n`, K_WATCH)
    }
    queueRaw(c, 'ignore default\r\n', K_IGN)
  }
  if (c.role === ROLE_IDLE) {
    queueRaw(c, `use ${tubeName(g, 0)}\r\n`, K_USE)
    queueRaw(c, `watch ${tubeName(g, 0)}\r\n`, K_WATCH)
  }
  if (c.setupLeft === 0) setupDone(c)
}

/** @param {Conn} c */
function setupDone(c) {
  c.ready = true
  openPending--
  const g = c.g
  if (g.resolve) openMore(g)
}

/** Opens connections of a group, at most `connectBatch` in setup at a time. @param {Group} g */
function openMore(g) {
  now = mono()
  while (g.opened < g.count && openPending < cfg.connectBatch) {
    const c = new Conn(g, g.idxBase + g.opened, g.ringcap)
    g.conns.push(c)
    g.opened++
    openPending++
    queueSetup(c)
    flush(c)
  }
  if (g.opened === g.count && g.resolve) {
    let settled = true
    for (const c of g.conns) if (!c.ready && !c.dead) settled = false
    if (settled) {
      const r = g.resolve
      g.resolve = null
      let ready = 0
      for (const c of g.conns) if (c.ready && !c.dead) ready++
      r({ ready, secs: (mono() - g.t0) / 1000 })
    }
  }
}

// ----------------------------------------------------------- commands

// stage-wide settings used by the drivers
let delayed = false
let delayMin = 1
let delayMax = 60
let stamp = false
let backlog = 0 // 0 = no cap: producers stop at putsSent - resOk >= backlog
let blockedProducers = false
let resTarget = 0 // reserve-delete: reserves allowed in this stage (this thread)
/** delayed bookkeeping, indexed by put sequence number */
let dTs = new Float64Array(0)
let dTr = new Float64Array(0)
let dId = new Float64Array(0)
let dDelay = new Uint8Array(0)
let dTube = new Uint32Array(0)

/** @param {Conn} c */
function queuePut(c) {
  const seq = G.putsSent++
  c.putsSent++
  const g = c.g
  if (g.randTubes > 0) {
    const t = Math.floor(Math.random() * g.randTubes)
    room(8 + g.prefix.length + 12)
    putBytes(USE_SP)
    wpos += pool.write(g.prefix, wpos, 'latin1')
    putNum(t)
    pool[wpos++] = CR
    pool[wpos++] = LF
    rpush(c, K_USEP, 0)
  }
  if (delayed) {
    const d = delayMin + Math.floor(Math.random() * (delayMax - delayMin + 1))
    dDelay[seq] = d
    dTs[seq] = now
    dTube[seq] = c.tube
    room(PUTCMD.length + 24)
    putBytes(PUT_SP)
    putNum(cfg.pri)
    pool[wpos++] = 32
    putNum(d)
    pool[wpos++] = 32
    putNum(cfg.ttr)
    pool[wpos++] = 32
    putNum(cfg.body)
    pool[wpos++] = CR
    pool[wpos++] = LF
    BODY.copy(pool, wpos)
    wpos += BODY.length
    pool[wpos++] = CR
    pool[wpos++] = LF
  } else {
    room(PUTCMD.length)
    const at = wpos
    PUTCMD.copy(pool, wpos)
    wpos += PUTCMD.length
    if (TAG_DIGITS.length > 0) stampTags(at)
    if (stamp) {
      // send time in µs as 16 hex digits at the start of the body
      let t = Math.round(now * 1000)
      for (let i = 15; i >= 0; i--) {
        const q = Math.floor(t / 16)
        pool[at + PUTHDR + i] = /** @type {number} */ (HEX[t - q * 16])
        t = q
      }
    }
  }
  rpush(c, K_PUT, seq)
}
const USE_SP = Buffer.from('use ', 'latin1')
const PUT_SP = Buffer.from('put ', 'latin1')

/** @param {Conn} c @param {number} id */
function queueDel(c, id) {
  room(32)
  for (let i = 0; i < 7; i++) pool[wpos + i] = /** @type {number} */ (S_DEL[i])
  wpos += 7
  putNum(id)
  pool[wpos++] = CR
  pool[wpos++] = LF
  rpush(c, K_DEL, id)
}

/** Queues commands up to the connection's pipeline window. @param {Conn} c */
function drive(c) {
  if (!c.ready || c.dead) return
  const g = c.g
  const P = g.pipe
  // batch refills: with P > 2 top up only once half the window came back
  if (P > 2 && c.inflight > P / 2 && c.role !== ROLE_WBLK) return
  switch (c.role) {
    case ROLE_PROD: {
      if (pacing) return // the pacer puts
      const W = g.randTubes > 0 ? 2 * P : P
      while (c.inflight < W && c.putsSent < c.quota) {
        if (backlog > 0 && G.putsSent - G.resOk >= backlog) {
          blockedProducers = true
          break
        }
        queuePut(c)
      }
      break
    }
    case ROLE_WRD:
      while (c.inflight < P) {
        if (c.dqt > c.dqh) queueDel(c, /** @type {number} */ (c.dq[c.dqh++ & c.mask]))
        else if (!c.drained && G.resSent < resTarget) {
          G.resSent++
          putBytes(S_RES0)
          rpush(c, K_RES0, 0)
        } else break
      }
      break
    case ROLE_WBLK:
      while (c.inflight < P) {
        if (c.dqt > c.dqh) queueDel(c, /** @type {number} */ (c.dq[c.dqh++ & c.mask]))
        else if (!c.resOut && stage !== null && !stage.finished) {
          G.resSent++
          c.resOut = true
          putBytes(S_RESB)
          rpush(c, K_RESB, 0)
        } else break
      }
      break
    case ROLE_CYC:
      while (c.inflight < P) {
        if (c.dqt > c.dqh) queueDel(c, /** @type {number} */ (c.dq[c.dqh++ & c.mask]))
        else if (c.owed > 0 && (c.lastPut || c.putsSent >= c.quota)) {
          c.owed--
          c.lastPut = false
          putBytes(S_RES0)
          rpush(c, K_RES0, 0)
        } else if (c.putsSent < c.quota) {
          c.owed++
          c.lastPut = true
          queuePut(c)
        } else break
      }
      break
    case ROLE_PD:
      while (c.inflight < P) {
        if (c.dqt > c.dqh) queueDel(c, /** @type {number} */ (c.dq[c.dqh++ & c.mask]))
        else if (c.putsSent < c.quota) queuePut(c)
        else break
      }
      break
    default:
      break
  }
}

// ----------------------------------------------------------- replies

/** @param {Buffer} buf @param {number} i */
function atou(buf, i) {
  let v = 0
  for (;;) {
    const b = /** @type {number} */ (buf[i++])
    if (b < 48 || b > 57) return v
    v = v * 10 + (b - 48)
  }
}

/** @param {Buffer} buf @param {number} p */
function parseHex16(buf, p) {
  let v = 0
  for (let i = 0; i < 16; i++) {
    const ch = /** @type {number} */ (buf[p + i])
    const d = ch >= 48 && ch <= 57 ? ch - 48 : ch >= 97 && ch <= 102 ? ch - 87 : -1
    if (d < 0) return 0
    v = v * 16 + d
  }
  return v
}

/**
 * One reply to the command at the head of c's ring.
 * @param {Conn} c @param {number} kind @param {number} t0 @param {number} tag
 * @param {Buffer} buf @param {number} p line start @param {number} body body start or -1 @param {number} blen
 * @param {number} end end of the whole reply
 */
function onReply(c, kind, t0, tag, buf, p, body, blen, end) {
  G.cmdsDone++
  if (kind !== K_RESB) rtt.add((now - t0) * 1e6)
  const b0 = buf[p]
  const b1 = buf[p + 1]
  const b2 = buf[p + 2]
  switch (kind) {
    case K_PUT:
      G.putsReplied++
      if (b0 === 73 && b1 === 78 && b2 === 83) {
        // INSERTED <id>
        G.putsOk++
        const id = atou(buf, p + 9)
        if (c.role === ROLE_PD) c.dq[c.dqt++ & c.mask] = id
        if (delayed) {
          dId[tag] = id
          dTr[tag] = now
        }
      } else reportErr('put', buf, p, end)
      break
    case K_RES0:
    case K_RESB:
      c.resOut = false
      if (b0 === 82 && b1 === 69 && b2 === 83) {
        // RESERVED <id> <bytes>
        const id = atou(buf, p + 9)
        if (blen !== cfg.body) G.bodyErr++
        if (stamp && blen >= 16) {
          const ts = parseHex16(buf, body)
          const tn = now * 1000
          if (ts > 0 && ts <= tn + 1) {
            e2e.add((tn - ts) * 1000)

          }
        }
        G.resOk++
        if (c.dqt - c.dqh > c.mask) throw new Error('internal: delete queue overflow')
        c.dq[c.dqt++ & c.mask] = id
        if (blockedProducers) kickProducers = true
      } else if (b0 === 84 && b1 === 73) {
        // TIMED_OUT
        G.timeouts++
        if (c.role === ROLE_WRD) {
          if (!c.drained) drainedConns++
          c.drained = true
          G.resSent-- // give the slot back to the other workers
        } else if (c.role === ROLE_CYC) {
          // each reserve follows this connection's own put: an empty tube means a lost job
          G.lost++
        }
      } else reportErr('reserve', buf, p, end)
      break
    case K_DEL:
      if (b0 === 68 && b1 === 69 && b2 === 76) G.jobsDone++
      else reportErr('delete', buf, p, end)
      break
    case K_USE:
      if (!(b0 === 85 && b1 === 83)) reportErr('use', buf, p, end)
      if (--c.setupLeft === 0) setupDone(c)
      break
    case K_USEP:
      if (!(b0 === 85 && b1 === 83)) reportErr('use', buf, p, end)
      break
    case K_WATCH:
    case K_IGN:
      if (!(b0 === 87 && b1 === 65)) reportErr('watch/ignore', buf, p, end)
      if (--c.setupLeft === 0) setupDone(c)
      break
    case K_AUTH:
      // AUTHENTICATED; an UNAUTHORIZED is followed by the server's close
      if (!(b0 === 65 && b1 === 85)) reportErr('auth', buf, p, end)
      if (--c.setupLeft === 0) setupDone(c)
      break
    default:
      reportErr('unexpected reply', buf, p, end)
  }
}

let kickProducers = false
let drainedConns = 0

/** @param {Conn} c @param {number} n */
function onRead(c, n) {
  if (c.dead) return
  now = mono()
  /** @type {Buffer} */
  let buf = RBUF
  let end = n
  if (c.carryLen > 0) {
    const need = c.carryLen + n
    let cb = /** @type {Buffer} */ (c.carry)
    if (cb.length < need) {
      const nb = Buffer.allocUnsafe(pow2ge(need))
      cb.copy(nb, 0, 0, c.carryLen)
      c.carry = cb = nb
    }
    RBUF.copy(cb, c.carryLen, 0, n)
    buf = cb
    end = need
  }
  let p = 0
  while (p < end) {
    let nl = -1
    for (let i = p; i < end; i++) {
      if (buf[i] === LF) {
        nl = i
        break
      }
    }
    if (nl < 0) {
      if (end - p > 4096) {
        reportErr('overlong reply line', buf, p, end)
        connDead(c, 'protocol error')
        return
      }
      break
    }
    const b0 = buf[p]
    let tot = nl + 1
    let body = -1
    let blen = 0
    // RESERVED / FOUND / OK carry a body whose length is the line's last number
    if ((b0 === 82 && buf[p + 2] === 83 && buf[p + 3] === 69) || (b0 === 70 && buf[p + 1] === 79) || (b0 === 79 && buf[p + 1] === 75)) {
      let q = nl - 1
      if (buf[q] === CR) q--
      let mul = 1
      while (q > p) {
        const d = /** @type {number} */ (buf[q])
        if (d < 48 || d > 57) break
        blen += (d - 48) * mul
        mul *= 10
        q--
      }
      body = nl + 1
      tot = body + blen + 2
      if (tot > end) break
    }
    if (c.inflight === 0) {
      reportErr('reply without request', buf, p, nl + 1)
      p = tot
      continue
    }
    const s = c.rh & c.mask
    c.rh++
    c.inflight--
    onReply(c, /** @type {number} */ (c.rk[s]), /** @type {number} */ (c.rt[s]), /** @type {number} */ (c.rtag[s]), buf, p, body, blen, tot)
    p = tot
    if (c.dead) return
  }
  if (p < end) {
    const left = end - p
    if (buf === RBUF) {
      if (c.carry === null || c.carry.length < left) c.carry = Buffer.allocUnsafe(pow2ge(Math.max(left, 4096)))
      RBUF.copy(c.carry, 0, p, end)
    } else buf.copyWithin(0, p, end)
    c.carryLen = left
  } else c.carryLen = 0
  if (stage !== null && !stage.finished) {
    drive(c)
    flush(c)
    if (kickProducers) {
      kickProducers = false
      blockedProducers = false
      for (const pc of stage.producers) {
        drive(pc)
        flush(pc)
      }
    }
    stage.check()
  }
}

// ----------------------------------------------------------- stages

/**
 * @typedef {{
 *   kind: string, target: number, conns: Conn[], producers: Conn[], finished: boolean,
 *   timer: NodeJS.Timeout | null, check: () => void, resolve: (v: unknown) => void
 * }} Stage
 */
/** @type {Stage | null} */
let stage = null
let pacing = false

function resetCounters() {
  for (const k of /** @type {(keyof typeof G)[]} */ (Object.keys(G))) G[k] = 0
  rtt.reset()
  e2e.reset()
  drainedConns = 0
  blockedProducers = false
  kickProducers = false
}

/** @param {Conn[]} conns */
function allDead(conns) {
  for (const c of conns) if (!c.dead) return false
  return true
}

/**
 * Runs one stage on groups of this thread; resolves with the counters.
 * kinds: put (producers), rd (reserve-delete workers), cycle, pd (put-delete),
 * paced (producers at a rate), mixed-workers (blocking workers until `target`
 * jobs are done), tubes (producers with a backlog cap + blocking workers).
 * @param {any} m
 */
function runStage(m) {
  resetCounters()
  /** @type {Conn[]} */
  const conns = []
  /** @type {Conn[]} */
  const producers = []
  for (const gid of m.gids) {
    const g = /** @type {Group} */ (groups.get(gid))
    for (const c of g.conns) {
      if (c.dead) continue
      conns.push(c)
      if (c.role === ROLE_PROD) producers.push(c)
      c.putsSent = 0
      c.owed = 0
      c.lastPut = false
      c.drained = false
    }
  }
  // per-connection quotas for put-issuing roles
  const issuers = conns.filter((c) => c.role === ROLE_PROD || c.role === ROLE_CYC || c.role === ROLE_PD)
  const n = m.target
  issuers.forEach((c, i) => {
    c.quota = Math.floor(n / issuers.length) + (i < n % issuers.length ? 1 : 0)
  })
  delayed = !!m.delayed
  delayMin = m.delayMin ?? 1
  delayMax = m.delayMax ?? 60
  stamp = !!m.stamp
  backlog = m.backlog ?? 0
  resTarget = m.kind === 'rd' ? n : Infinity
  pacing = m.kind === 'paced'
  if (delayed) {
    dTs = new Float64Array(n)
    dTr = new Float64Array(n)
    dId = new Float64Array(n)
    dDelay = new Uint8Array(n)
    dTube = new Uint32Array(n)
  }
  const kind = m.kind
  return new Promise((resolve) => {
    /** @type {Stage} */
    const st = {
      kind,
      target: n,
      conns,
      producers,
      finished: false,
      timer: null,
      check() {},
      resolve,
    }
    const finish = (/** @type {boolean} */ timedOut) => {
      if (st.finished) return
      st.finished = true
      pacing = false
      if (st.timer) clearTimeout(st.timer)
      resolve({
        G: { ...G },
        rtt: rtt.toJSON(),
        e2e: e2e.toJSON(),
        timedOut,
        errSamples: errSamples.splice(0),
        dead: conns.filter((c) => c.dead).length,
      })
    }
    /** @type {() => boolean} */
    let done
    switch (kind) {
      case 'put':
        done = () => G.putsReplied >= n
        break
      case 'rd':
        done = () => {
          if (G.jobsDone >= n) return true
          if (drainedConns < conns.length) return false
          for (const c of conns) if (!c.dead && c.inflight > 0) return false
          return true
        }
        break
      case 'cycle':
        done = () => G.jobsDone + G.lost >= n
        break
      case 'pd':
        done = () => G.jobsDone >= n
        break
      case 'paced':
        done = () => G.putsReplied >= n
        break
      case 'mixed-workers':
        done = () => G.jobsDone >= n
        break
      case 'tubes':
        done = () => G.jobsDone >= n && G.putsReplied >= G.putsSent
        break
      default:
        throw new Error(`unknown stage kind ${kind}`)
    }
    st.check = () => {
      if (!st.finished && (done() || allDead(conns))) finish(false)
    }
    st.timer = setTimeout(() => finish(true), Math.max(1, m.deadline - mono()))
    stage = st
    now = mono()
    if (kind === 'paced') startPacer(st, producers, m.rate)
    else
      for (const c of conns) {
        drive(c)
        flush(c)
      }
    st.check()
  })
}

// A cell to sleep on: Atomics.wait gives sub-millisecond pacing without
// spinning (Node timers cannot wait less than 1 ms).
const SLEEP = new Int32Array(new SharedArrayBuffer(4))

/**
 * Puts at `rate` jobs/s, round robin over the producers, each job within
 * ~0.1 ms of its due time. This runs in a thread of its own (the workers
 * that measure the latency run in another): between puts it sleeps in
 * Atomics.wait, which blocks this thread's event loop, so every ~2 ms it
 * returns to the loop to read the INSERTED replies. Hence the producers' own
 * put round trips are inflated by up to that much; the end-to-end latency
 * (stamp in the body -> RESERVED at a worker) is not. A 1 ms timer would put
 * ten jobs at once and queue them at the server; spinning on setImmediate
 * makes the scheduler preempt the generator for whole time slices.
 * @param {Stage} st @param {Conn[]} prods @param {number} rate
 */
function startPacer(st, prods, rate) {
  const t0 = mono()
  const np = prods.length
  const n = st.target
  let rr = 0
  const tick = () => {
    const yieldAt = mono() + 2
    for (;;) {
      if (st.finished || G.putsSent >= n) return // the rest arrives through normal reads
      const t = mono()
      let due = Math.floor(((t - t0) / 1000) * rate)
      if (due > n) due = n
      if (G.putsSent < due) {
        now = t
        const lag = t - (t0 + (G.putsSent * 1000) / rate)
        if (lag > maxPaceLag) maxPaceLag = lag
        while (G.putsSent < due) {
          const c = /** @type {Conn} */ (prods[rr])
          rr = rr + 1 === np ? 0 : rr + 1
          if (c.dead) {
            if (allDead(prods)) return
            continue
          }
          if (c.inflight > c.mask - 2) {
            G.ringFull++
            break
          }
          queuePut(c)
          flush(c)
        }
      }
      const next = t0 + ((G.putsSent + 1) * 1000) / rate
      const t2 = mono()
      if (t2 >= yieldAt) break
      const w = Math.min(next, yieldAt) - t2
      if (w > 0.01) Atomics.wait(SLEEP, 0, 0, w)
    }
    setImmediate(tick)
  }
  setImmediate(tick)
}
let maxPaceLag = 0


// ----------------------------------------------------------- messages

/** @param {any} m */
async function handle(m) {
  switch (m.t) {
    case 'init':
      Object.assign(cfg, m.cfg)
      secureContext = cfg.tlsPort > 0 ? tls.createSecureContext({ ca: cfg.tlsCa }) : null
      buildPut()
      return { ok: true }
    case 'open': {
      const role = ROLES[m.role]
      if (role === undefined) throw new Error(`unknown role ${m.role}`)
      /** @type {Group} */
      const g = {
        gid: m.gid,
        role,
        count: m.count,
        total: m.total ?? m.count,
        idxBase: m.idxBase ?? 0,
        pipe: m.pipe,
        tubes: m.tubes ?? 1,
        prefix: m.prefix,
        randTubes: m.randTubes ?? 0,
        conns: [],
        opened: 0,
        ringcap: role === ROLE_IDLE ? 4 : Math.max(m.pipe * 2 + 8, m.ringcap ?? 0),
        resolve: null,
        t0: mono(),
      }
      if (role === ROLE_WRD || role === ROLE_WBLK) {
        // a worker's setup commands (one watch per tube it serves) are all in flight at once
        const mine = g.total >= g.tubes ? 1 : Math.ceil(g.tubes / g.total)
        g.ringcap = Math.max(g.ringcap, mine + 8)
      }
      groups.set(g.gid, g)
      const res = await new Promise((resolve) => {
        const timer = setTimeout(
          () => {
            if (!g.resolve) return
            g.resolve = null
            let ready = 0
            for (const c of g.conns) if (c.ready && !c.dead) ready++
            resolve({ ready, secs: (mono() - g.t0) / 1000, timedOut: true })
          },
          Math.max(1, m.deadline - mono()),
        )
        g.resolve = (v) => {
          clearTimeout(timer)
          resolve(v)
        }
        openMore(g)
      })
      return { .../** @type {object} */ (res), errSamples: errSamples.splice(0) }
    }
    case 'run': {
      maxPaceLag = 0
      const r = /** @type {any} */ (await runStage(m))
      r.maxPaceLagUs = maxPaceLag * 1000
      return r
    }
    case 'close': {
      const g = groups.get(m.gid)
      if (g) {
        for (const c of g.conns) {
          c.dead = true
          c.sock.destroy()
        }
        groups.delete(m.gid)
      }
      stage = null
      return { ok: true }
    }
    case 'dcheck': {
      // delayed: how many jobs must (lo) and may (hi) be ready at a check made between t1 and t2
      let lo = 0
      let hi = 0
      const tol = m.tol
      for (let i = 0; i < dId.length; i++) {
        if (!dId[i]) continue
        const d = /** @type {number} */ (dDelay[i]) * 1000
        if (/** @type {number} */ (dTr[i]) + d + tol <= m.t1) lo++
        if (/** @type {number} */ (dTs[i]) + d <= m.t2 + tol) hi++
      }
      return { lo, hi }
    }
    case 'dpeek': {
      // delayed: is job `id` (from peek-delayed on tube 0 between t1 and t2) plausible as the earliest?
      let idx = -1
      let minHi = Infinity
      const tol = m.tol
      for (let i = 0; i < dId.length; i++) {
        if (!dId[i] || dTube[i] !== 0) continue
        if (dId[i] === m.jobId) idx = i
        const d = /** @type {number} */ (dDelay[i]) * 1000
        // surely still delayed at t2: its latest possible due time bounds the answer
        if (/** @type {number} */ (dTs[i]) + d > m.t2 + tol && /** @type {number} */ (dTr[i]) + d < minHi) minHi = /** @type {number} */ (dTr[i]) + d
      }
      if (idx < 0) return { ok: false, why: `peek-delayed:unknown_id_${m.jobId}` }
      const d = /** @type {number} */ (dDelay[idx]) * 1000
      if (/** @type {number} */ (dTr[idx]) + d + tol < m.t1) return { ok: false, why: `peek-delayed:job_${m.jobId}_already_due` }
      if (minHi !== Infinity && /** @type {number} */ (dTs[idx]) + d > minHi + tol)
        return { ok: false, why: `peek-delayed:job_${m.jobId}_not_earliest` }
      return { ok: true, delay: dDelay[idx] }
    }
    case 'exit':
      for (const g of groups.values())
        for (const c of g.conns) {
          c.dead = true
          c.sock.destroy()
        }
      groups.clear()
      // let the thread end by itself (a profiler started with --cpu-prof gets to write its file)
      setImmediate(() => parentPort?.close())
      return { ok: true }
    default:
      throw new Error(`engine: unknown message ${m.t}`)
  }
}

if (parentPort) {
  const port = parentPort
  port.on('message', (m) => {
    handle(m).then(
      (r) => port.postMessage({ id: m.id, r }),
      (e) => port.postMessage({ id: m.id, err: String(e && e.stack ? e.stack : e) }),
    )
  })
}
