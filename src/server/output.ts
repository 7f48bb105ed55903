/**
 * Reply assembly: every reply produced while one connection processes its
 * buffered input goes into one shared scratch buffer and leaves in a single
 * `socket.write` (PERFORMANCE.md: one write per read is the largest single
 * win). Only one connection runs at a time, so one scratch serves all of them
 * and an idle connection costs no output memory. Large job bodies are not
 * copied: the scratch is flushed and the body written as is, both inside a
 * cork so they leave in one writev. Without a large body there is exactly one
 * write and no cork (corking a single write only adds work).
 */
import type { Job } from '../queue/job.js'

/** Bodies at least this large are written directly instead of copied. */
const COPY_LIMIT = 2048

export interface Sink {
  /** Returns false when the socket's buffer is full (backpressure). */
  write(chunk: Buffer): boolean
  cork(): void
  uncork(): void
}

export class Output {
  private buf: Buffer
  private len = 0
  private sink: Sink | null = null
  private corked = false
  /** False once a write reported backpressure during this batch. */
  writable = true

  constructor(size = 64 * 1024) {
    this.buf = Buffer.allocUnsafe(size)
  }

  begin(sink: Sink): void {
    this.sink = sink
    this.len = 0
    this.writable = true
  }

  /** Sends what was assembled; returns false on backpressure. */
  end(): boolean {
    this.flush()
    if (this.corked) {
      this.corked = false
      this.sink!.uncork()
    }
    this.sink = null
    return this.writable
  }

  fixed(reply: Buffer): void {
    this.ensure(reply.length)
    this.len += reply.copy(this.buf, this.len)
  }

  /** A reply built as a latin1 string (numbers, names, YAML). */
  text(s: string): void {
    this.ensure(s.length)
    this.len += this.buf.write(s, this.len, 'latin1')
  }

  /** `<word> <id> <bytes>\r\n<body>` where the stored body carries its CRLF. */
  job(word: string, j: Job): void {
    this.text(`${word} ${j.id} ${j.body.length - 2}\r\n`)
    if (j.body.length < COPY_LIMIT) {
      this.fixed(j.body)
    } else {
      if (!this.corked) {
        this.corked = true
        this.sink!.cork()
      }
      this.flush()
      if (!this.sink!.write(j.body)) this.writable = false
    }
  }

  private flush(): void {
    if (this.len === 0) return
    const chunk = Buffer.allocUnsafe(this.len)
    this.buf.copy(chunk, 0, 0, this.len)
    this.len = 0
    if (!this.sink!.write(chunk)) this.writable = false
  }

  private ensure(n: number): void {
    if (this.len + n <= this.buf.length) return
    this.flush()
    if (n > this.buf.length) this.buf = Buffer.allocUnsafe(Math.max(n, this.buf.length * 2))
  }
}
