/**
 * --pg-url in libpq's URL form, as postgres.js options (src/store/postgres/connect.ts),
 * the password kept out of log lines, and the namespace rule and lock key (names.ts).
 */
import { describe, expect, it } from 'vitest'
import { pgOptions } from '../../src/store/postgres/connect.js'
import { checkSchemaName, describePgUrl, lockKey } from '../../src/store/postgres/names.js'

describe('pgOptions', () => {
  it('reads user, password, host, port, database and sslmode; other parameters are session settings', () => {
    const o = pgOptions('postgres://tsb:s%40cret@db.example:6543/queues?sslmode=require&application_name=q1&connect_timeout=3')
    expect(o).toMatchObject({ user: 'tsb', pass: 's@cret', host: 'db.example', port: 6543, database: 'queues', ssl: 'require', connect_timeout: 3 })
    expect(o.connection).toEqual({ application_name: 'q1' })
  })
  it('takes a Unix socket directory as ?host= (libpq) or as a percent-encoded host, and an IPv6 address in brackets', () => {
    expect(pgOptions('postgres://postgres@/postgres?host=/var/run/postgresql')).toMatchObject({ host: '/var/run/postgresql', user: 'postgres', database: 'postgres' })
    expect(pgOptions('postgresql://%2Ftmp%2Fpg/db')).toMatchObject({ host: '/tmp/pg', database: 'db' })
    expect(pgOptions('postgres://[::1]:5433/db')).toMatchObject({ host: '::1', port: 5433 })
    expect(pgOptions('postgres://localhost')).toEqual({ host: 'localhost', connection: {} })
  })
  it('refuses what is not a postgres:// URL', () => {
    expect(() => pgOptions('mysql://h/db')).toThrow(/not a postgres:\/\/ URL/)
  })
})

describe('names', () => {
  it('masks the password of a URL for the log', () => {
    expect(describePgUrl('postgres://tsb:secret@h:5432/db')).toBe('postgres://tsb:***@h:5432/db')
    expect(describePgUrl('postgres://tsb@h/db')).toBe('postgres://tsb@h/db')
  })
  it('takes lower-case unquoted identifiers as schema names, and gives each its own 31-bit lock key', () => {
    expect(checkSchemaName('tsbeanstalkd')).toBeNull()
    expect(checkSchemaName('queue_2')).toBeNull()
    for (const bad of ['Queue', '2q', 'a-b', 'pg_x', 'public', 'x'.repeat(64)]) expect(checkSchemaName(bad), bad).not.toBeNull()
    expect(lockKey('a')).not.toBe(lockKey('b'))
    expect(lockKey('tsbeanstalkd')).toBeGreaterThanOrEqual(0)
    expect(lockKey('tsbeanstalkd')).toBeLessThan(2 ** 31)
  })
})
