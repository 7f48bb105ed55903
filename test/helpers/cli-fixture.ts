/**
 * The hooks of a test file that spawns the CLI: build once, one temp
 * directory for the file, and after each test every client closed and every
 * child killed (bounded). Call at the top level of the test file.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, afterEach, beforeAll } from 'vitest'
import { RawClient } from './client.js'
import { ensureBuilt, killAll } from './process.js'

export interface CliFixture {
  /** The file's temp directory (removed after its last test). */
  readonly tmp: () => string
  /** A client on 127.0.0.1:port, closed after the test. */
  connect(port: number): Promise<RawClient>
  /** A client on a Unix socket, closed after the test. */
  connectPath(sock: string): Promise<RawClient>
}

export function cliFixture(prefix: string): CliFixture {
  let tmp = ''
  let clients: RawClient[] = []
  beforeAll(() => {
    ensureBuilt()
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), prefix))
  }, 120_000)
  afterEach(async () => {
    for (const c of clients) c.close()
    clients = []
    await killAll()
  })
  afterAll(() => {
    fs.rmSync(tmp, { recursive: true, force: true })
  })
  const track = (c: RawClient): RawClient => {
    clients.push(c)
    return c
  }
  return {
    tmp: () => tmp,
    connect: async (port) => track(await RawClient.connect(port)),
    connectPath: async (sock) => track(await RawClient.connectPath(sock)),
  }
}
