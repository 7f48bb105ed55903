/**
 * For the tests of clients that stop reading (flow control): fill a paused
 * socket until the server stops reading it, and wait for a counter of the
 * server to settle. Every wait is bounded.
 */
import type net from 'node:net'

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/**
 * Writes `chunk` again and again to `socket` (paused by the caller, so it
 * reads nothing) until the server stops reading it: our unsent bytes then
 * pile up in userland. The socket buffers take about 5 MB first; a server
 * still reading past 64 MB, or after `ms`, is buffering without bound.
 */
export async function fillUntilUnread(socket: net.Socket, chunk: Buffer, ms: number): Promise<void> {
  const deadline = performance.now() + ms
  while (socket.writableLength < 1024 * 1024) {
    if (performance.now() > deadline || socket.bytesWritten > 64 * 1024 * 1024)
      throw new Error(`the server kept reading the stalled client (${socket.bytesWritten} bytes)`)
    socket.write(chunk)
    await new Promise((r) => setImmediate(r))
  }
}

/** The value `read` settles on: read every 100 ms until two reads agree (at most 30 times). */
export async function settled<T>(read: () => Promise<T>): Promise<T> {
  let last = await read()
  for (let i = 0; i < 30; i++) {
    await sleep(100)
    const now = await read()
    if (now === last) break
    last = now
  }
  return last
}
