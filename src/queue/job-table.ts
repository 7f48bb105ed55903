/**
 * Jobs by id. Ids are handed out densely and in order, so jobs live in pages
 * of PAGE slots indexed by id: about 8 bytes a job where a Map costs about 40
 * (PERFORMANCE.md: "ids in paged arrays instead of a Map"). A page is dropped
 * when its last job goes, so long-gone ids cost nothing; except the newest
 * page, which new ids still fill: with a short queue (each job deleted
 * before the next put) dropping it would allocate 32 KiB per put.
 */
import type { Job } from './job.js'

const PAGE = 4096

export class JobTable {
  private readonly pages = new Map<number, (Job | undefined)[]>()
  private readonly live = new Map<number, number>()
  /** The highest page ever made: never dropped. */
  private newest = -1
  size = 0

  get(id: number): Job | undefined {
    return this.pages.get(Math.floor(id / PAGE))?.[id % PAGE]
  }

  set(id: number, job: Job): void {
    const p = Math.floor(id / PAGE)
    let page = this.pages.get(p)
    if (page === undefined) {
      page = new Array<Job | undefined>(PAGE).fill(undefined)
      this.pages.set(p, page)
      this.live.set(p, 0)
      if (p > this.newest) {
        // The previous newest page may have emptied while it was kept.
        if (this.live.get(this.newest) === 0) this.dropPage(this.newest)
        this.newest = p
      }
    }
    if (page[id % PAGE] === undefined) {
      this.size++
      this.live.set(p, this.live.get(p)! + 1)
    }
    page[id % PAGE] = job
  }

  delete(id: number): void {
    const p = Math.floor(id / PAGE)
    const page = this.pages.get(p)
    if (page === undefined || page[id % PAGE] === undefined) return
    page[id % PAGE] = undefined
    this.size--
    const n = this.live.get(p)! - 1
    this.live.set(p, n)
    if (n === 0 && p !== this.newest) this.dropPage(p)
  }

  private dropPage(p: number): void {
    this.pages.delete(p)
    this.live.delete(p)
  }

  /** Pages held (memory: 32 KiB each). */
  get pageCount(): number {
    return this.pages.size
  }

  /** A walk over the jobs present now, in steps (jobs added later may be missed). */
  walk(): JobWalk {
    return new JobWalk(this.pages)
  }

  *values(): IterableIterator<Job> {
    for (const page of this.pages.values()) for (const j of page) if (j !== undefined) yield j
  }
}

/** A resumable walk over the pages that existed when it began. */
export class JobWalk {
  private readonly pages: Map<number, (Job | undefined)[]>
  private readonly keys: number[]
  private k = 0
  private slot = 0

  constructor(pages: Map<number, (Job | undefined)[]>) {
    this.pages = pages
    this.keys = [...pages.keys()]
  }

  /** Visits up to n slots; false once every page has been visited. */
  step(n: number, visit: (job: Job) => void): boolean {
    while (n > 0 && this.k < this.keys.length) {
      const page = this.pages.get(this.keys[this.k]!)
      // A page dropped since the walk began has no jobs left to visit.
      const end = page === undefined ? this.slot : Math.min(PAGE, this.slot + n)
      for (let i = this.slot; i < end; i++) {
        const j = page![i]
        if (j !== undefined) visit(j)
      }
      n -= end - this.slot
      this.slot = end
      if (page === undefined || end === PAGE) {
        this.k++
        this.slot = 0
      }
    }
    return this.k < this.keys.length
  }
}
