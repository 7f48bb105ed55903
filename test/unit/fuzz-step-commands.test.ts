import { describe, expect, it } from 'vitest'
// @ts-expect-error: plain JavaScript (checked by // @ts-check), no declarations
import { Framing, IdCounter } from '../../conformance/fuzz/lib/framing.mjs'
// @ts-expect-error: as above
import { tryStep } from '../../conformance/fuzz/lib/lockstep.mjs'

/** The fuzzer's count of the commands one send step starts or completes on a fresh connection. */
function commands(...chunks: string[]): number {
  const m = new Framing(65535, new IdCounter(), { lazy: true })
  return tryStep(m, { op: 'send', conn: 'c1', chunks: chunks.map((c) => Buffer.from(c, 'latin1')) }).commands
}

// The lockstep fuzzer lets a connection send more than one command in a step
// only while no other connection has commands queued behind a waiting reserve:
// after the reserve ends the reference interleaves the two one command per turn.
describe('fuzzer: commands in a step', () => {
  it('counts complete commands', () => {
    expect(commands('use a\r\n')).toBe(1)
    expect(commands('use a\r\nput 0 0 1 1\r\nx\r\n')).toBe(2)
  })

  it('counts a put whose body is still to come: its line took an id', () => {
    // fuzz seed 1913967976, case 153: this step, while another connection was loaded.
    expect(commands('reserve-with-timeout 2147483648\r\nput 599 0 4294967295 10\r\nqfivzddxh\r\n')).toBe(2)
    expect(commands('put 0 0 10 5\r\nab')).toBe(1)
  })

  it('counts a line still to come', () => {
    expect(commands('reserve\r\nuse')).toBe(2)
    expect(commands('use a\r\n', 'use b\r\n')).toBe(2)
  })
})
