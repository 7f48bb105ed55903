/**
 * The --http listener: `/metrics` (Prometheus text), `/healthz` (the process
 * serves) and `/readyz` (the store is replayed and the listeners accept);
 * and `POST /drain` (drain mode, as SIGUSR1), the one endpoint that changes
 * state, which needs a bearer token from --http-token-file and is off
 * without one. Reads stay open unless --http-token-metrics asks the token
 * for /metrics too; /healthz and /readyz are always open (probes, and they
 * tell nothing but the state). A refused token is counted and logged with
 * the peer, throttled, never with the token.
 * Separate from the beanstalk port and off by default; it shares the event
 * loop but nothing else with the protocol path, and does work only when
 * asked (a scrape reads counters the queue keeps anyway).
 *
 * It is started before the store is opened, so `/readyz` can say 503 while
 * a replay runs (once the replay yields to the event loop; see cli.ts).
 */
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Logger } from 'pino'
import { ReadyState, type Readiness } from '../util/readiness.js'
import { Throttled } from '../util/throttled.js'
import type { TokenSet } from '../util/token-set.js'
import type { Metrics } from './metrics.js'

export interface HttpOptions {
  readonly host: string
  readonly port: number
  readonly readiness: Readiness
  readonly metrics: Metrics
  readonly log: Logger
  /** Bearer tokens now (they reload on SIGHUP); null or absent: POST /drain is off. */
  readonly tokens?: () => TokenSet | null
  /** /metrics wants the bearer token too. */
  readonly tokenMetrics?: boolean
  /** Drain mode (SIGUSR1's); false while the server is not up yet. */
  readonly drain?: () => boolean
}

const JSON_TYPE = 'application/json; charset=utf-8'
/** At most one line about refused tokens per this many ms. */
const AUTH_LOG_MS = 10_000
const BEARER = /^Bearer ([\x21-\x7e]+)$/

export class HttpEndpoint {
  private readonly server: http.Server
  private readonly opts: HttpOptions
  /** Requests refused for a missing or wrong bearer token (/metrics). */
  authFailures = 0
  private readonly authLog: Throttled

  private constructor(opts: HttpOptions) {
    this.opts = opts
    this.authLog = new Throttled(AUTH_LOG_MS, (n, peer) => {
      opts.log.warn({ peer, failures: n }, `http: refused ${n === 1 ? 'a request' : `${n} requests`} without a valid bearer token (last from ${String(peer)})`)
    })
    this.server = http.createServer((req, res) => this.route(req, res))
    // A scraper that stalls must not hold a socket for long.
    this.server.requestTimeout = 10_000
    this.server.headersTimeout = 5_000
    this.server.keepAliveTimeout = 5_000
  }

  /** Binds HOST:PORT; resolves once it accepts. */
  static async listen(opts: HttpOptions): Promise<HttpEndpoint> {
    const ep = new HttpEndpoint(opts)
    await new Promise<void>((resolve, reject) => {
      ep.server.once('error', reject)
      ep.server.listen({ host: opts.host, port: opts.port }, () => {
        ep.server.off('error', reject)
        resolve()
      })
    })
    ep.server.on('error', (err) => opts.log.warn({ err }, 'http: listener error'))
    return ep
  }

  get address(): AddressInfo {
    return this.server.address() as AddressInfo
  }

  close(): Promise<void> {
    this.authLog.stop()
    this.server.closeAllConnections()
    return new Promise((resolve) => this.server.close(() => resolve()))
  }

  private route(req: http.IncomingMessage, res: http.ServerResponse): void {
    const path = (req.url ?? '/').split('?', 1)[0]
    if (path === '/drain') return this.drainRoute(req, res)
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('method not allowed\n')
      return
    }
    switch (path) {
      case '/metrics':
        if (this.opts.tokenMetrics === true && !this.authorized(req, res)) return
        return this.metrics(req, res)
      case '/healthz':
        return this.health(req, res)
      case '/readyz':
        return this.ready(req, res)
      default:
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics, /healthz, /readyz or POST /drain\n')
    }
  }

  /**
   * The request carries `Authorization: Bearer <one of the tokens>`; if not,
   * the answer is sent here: 403 when no token file is set (the endpoint is
   * off), else 401 with a WWW-Authenticate challenge (RFC 6750).
   */
  private authorized(req: http.IncomingMessage, res: http.ServerResponse): boolean {
    const tokens = this.opts.tokens?.() ?? null
    if (tokens === null) {
      send(req, res, 403, JSON_TYPE, `${JSON.stringify({ error: 'off: no --http-token-file ([http] token_file) is set' })}\n`)
      return false
    }
    const m = BEARER.exec(req.headers.authorization ?? '')
    if (m !== null && tokens.has(m[1]!)) return true
    this.authFailures++
    this.authLog.hit(req.socket.remoteAddress ?? 'unknown')
    res.setHeader('www-authenticate', 'Bearer realm="tsbeanstalkd"')
    send(req, res, 401, JSON_TYPE, `${JSON.stringify({ error: 'a valid bearer token is required (Authorization: Bearer TOKEN)' })}\n`)
    return false
  }

  /** POST /drain: drain mode, as SIGUSR1 (puts answer DRAINING, /readyz says 503). */
  private drainRoute(req: http.IncomingMessage, res: http.ServerResponse): void {
    if (req.method !== 'POST') {
      res.writeHead(405, { allow: 'POST', 'content-type': 'text/plain' }).end('method not allowed: POST /drain\n')
      return
    }
    if (!this.authorized(req, res)) return
    if (this.opts.drain?.() !== true) {
      send(req, res, 503, JSON_TYPE, `${JSON.stringify({ error: 'the server is not up yet; try again' })}\n`)
      return
    }
    send(req, res, 200, JSON_TYPE, `${JSON.stringify({ status: 'draining' })}\n`)
  }

  private metrics(req: http.IncomingMessage, res: http.ServerResponse): void {
    this.opts.metrics.render().then(
      (text) => send(req, res, 200, this.opts.metrics.contentType, text),
      (err: unknown) => {
        this.opts.log.error({ err }, 'http: /metrics failed')
        send(req, res, 500, 'text/plain', 'metrics failed; see the server log\n')
      },
    )
  }

  /** Alive: the event loop answers. Only a failed store (the process is about to exit) says otherwise. */
  private health(req: http.IncomingMessage, res: http.ServerResponse): void {
    const { readiness } = this.opts
    const ok = readiness.state !== ReadyState.FAILED
    send(req, res, ok ? 200 : 503, JSON_TYPE, `${JSON.stringify({ status: ok ? 'ok' : 'failed', state: readiness.state })}\n`)
  }

  /** Ready: 200 once serving; 503 while starting, replaying, draining, stopping or failed. */
  private ready(req: http.IncomingMessage, res: http.ServerResponse): void {
    const { readiness } = this.opts
    const body: Record<string, unknown> = { status: readiness.ready ? 'ready' : 'not ready', state: readiness.state }
    if (readiness.detail !== null) body['detail'] = readiness.detail
    if (readiness.state === ReadyState.REPLAYING && readiness.progress !== null) body['replay'] = readiness.progress
    send(req, res, readiness.ready ? 200 : 503, JSON_TYPE, `${JSON.stringify(body)}\n`)
  }
}

function send(req: http.IncomingMessage, res: http.ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' })
  res.end(req.method === 'HEAD' ? undefined : body)
}
