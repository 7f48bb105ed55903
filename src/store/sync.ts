/** fsync of a file or a directory by path (the store's few one-off syncs; the hot path keeps its fds). */
import fs from 'node:fs'

export function fsyncFile(file: string): void {
  const fd = fs.openSync(file, 'r')
  try {
    fs.fsyncSync(fd)
  } finally {
    fs.closeSync(fd)
  }
}

/** Makes new or removed directory entries durable; a file system that cannot sync directories (EINVAL) is let be. */
export function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r')
  try {
    fs.fsyncSync(fd)
  } catch (err) {
    if (!['EINVAL', 'EISDIR', 'EBADF'].includes((err as NodeJS.ErrnoException).code ?? '')) throw err
  } finally {
    fs.closeSync(fd)
  }
}
