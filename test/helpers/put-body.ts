/** Registry.put with a body from a Buffer, as the parser would have read it into the arena. */
import type { Job } from '../../src/queue/job.js'
import type { Registry } from '../../src/queue/registry.js'
import type { Session } from '../../src/queue/session.js'

export function putBody(r: Registry, s: Session, pri: number, delaySecs: number, ttrSecs: number, body: Buffer): Job | null {
  const { slab, off } = r.bodies.copyIn(body)
  return r.put(s, r.allocateId(), pri, delaySecs, ttrSecs, slab, off, body.length)
}
