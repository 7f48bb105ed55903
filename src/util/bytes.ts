/**
 * Byte copies and buffer views that allocate nothing on the command path.
 *
 * In Node 20, `Buffer#copy` from an offset makes a Uint8Array view of the
 * source (97 bytes) for every call, and every `subarray` is another 96-byte
 * object. A put used to make three of them (the read, the body copy, the
 * reply's write): more than half of what the server allocated per command,
 * and so more than half of the young-generation collections whose pauses
 * are the tail latency (README, "Measured on 2026-12-03").
 */

type NativeCopy = (source: Uint8Array, target: Uint8Array, targetStart: number, sourceStart: number, sourceEnd: number) => number

/**
 * Node's own copy binding (what `Buffer#copy` called before it made views),
 * or null where it is missing or does not behave as expected, checked once.
 */
const nativeCopy: NativeCopy | null = (() => {
  try {
    const b = (process as unknown as { binding(name: string): { copy?: unknown } }).binding('buffer')
    if (typeof b.copy !== 'function') return null
    const copy = b.copy as NativeCopy
    const src = Uint8Array.of(1, 2, 3, 4)
    const dst = new Uint8Array(4)
    if (copy(src, dst, 1, 1, 3) !== 2 || dst.join() !== '0,2,3,0') return null
    return copy
  } catch {
    return null
  }
})()

/** Copies src[srcStart, srcEnd) into dst at dstStart (which must have room); returns the bytes copied. */
export function copyBytes(src: Buffer, dst: Buffer, dstStart: number, srcStart: number, srcEnd: number): number {
  return nativeCopy === null ? src.copy(dst, dstStart, srcStart, srcEnd) : nativeCopy(src, dst, dstStart, srcStart, srcEnd)
}

/** Views up to this long are kept for reuse: a command's read or reply is nearly always shorter. */
const CACHED_MAX = 4096

/**
 * The views `buf[0, n)` of one buffer, made once per length and then reused.
 * Only for a buffer whose views are read, never kept as data (a socket read
 * or write of a shared chunk): two callers may get the same object.
 */
export class PrefixViews {
  private readonly views: (Buffer | undefined)[] = new Array<Buffer | undefined>(CACHED_MAX + 1).fill(undefined)

  private readonly buf: Buffer

  constructor(buf: Buffer) {
    this.buf = buf
  }

  get(n: number): Buffer {
    if (n > CACHED_MAX) return this.buf.subarray(0, n)
    return (this.views[n] ??= this.buf.subarray(0, n))
  }
}
