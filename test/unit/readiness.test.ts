import { describe, expect, it } from 'vitest'
import { Readiness, ReadyState } from '../../src/util/readiness.js'

describe('Readiness', () => {
  it('is ready only while serving, and tells listeners of every change', () => {
    const r = new Readiness()
    const seen: string[] = []
    r.onChange((s) => seen.push(s))
    expect(r.state).toBe(ReadyState.STARTING)
    expect(r.ready).toBe(false)
    r.set(ReadyState.REPLAYING)
    r.reportReplay({ files: 1, filesTotal: 2, bytes: 10, bytesTotal: 20, records: 3, jobs: 2 })
    expect(r.ready).toBe(false)
    r.set(ReadyState.SERVING)
    expect(r.ready).toBe(true)
    r.set(ReadyState.DRAINING)
    expect(r.ready).toBe(false)
    expect(seen).toEqual(['replaying', 'serving', 'draining'])
    expect(r.progress?.records).toBe(3)
  })

  it('stays failed once failed, with the reason', () => {
    const r = new Readiness()
    r.set(ReadyState.FAILED, 'binlog write failed')
    r.set(ReadyState.SERVING)
    expect(r.state).toBe(ReadyState.FAILED)
    expect(r.detail).toBe('binlog write failed')
  })
})
