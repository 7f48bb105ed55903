/**
 * The --http listener: `/metrics` (Prometheus text), `/healthz` (the process
 * serves) and `/readyz` (the store is replayed and the listeners accept).
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
import type { Metrics } from './metrics.js'

export interface HttpOptions {
  readonly host: string
  readonly port: number
  readonly readiness: Readiness
  readonly metrics: Metrics
  readonly log: Logger
}

const JSON_TYPE = 'application/json; charset=utf-8'

export class HttpEndpoint {
  private readonly server: http.Server
  private readonly opts: HttpOptions

  private constructor(opts: HttpOptions) {
    this.opts = opts
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
    this.server.closeAllConnections()
    return new Promise((resolve) => this.server.close(() => resolve()))
  }

  private route(req: http.IncomingMessage, res: http.ServerResponse): void {
    const path = (req.url ?? '/').split('?', 1)[0]
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('method not allowed\n')
      return
    }
    switch (path) {
      case '/metrics':
        return this.metrics(req, res)
      case '/healthz':
        return this.health(req, res)
      case '/readyz':
        return this.ready(req, res)
      default:
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics, /healthz or /readyz\n')
    }
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
