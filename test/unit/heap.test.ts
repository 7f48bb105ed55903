import { describe, expect, it } from 'vitest'
import { Heap, type HeapItem } from '../../src/queue/heap.js'
import { prng } from '../helpers/prng.js'

interface Item extends HeapItem {
  id: number
  key: number
}

// Ties broken by id, as the ready queue breaks priority ties by job id.
const less = (a: Item, b: Item): boolean => a.key < b.key || (a.key === b.key && a.id < b.id)
const cmp = (a: Item, b: Item): number => a.key - b.key || a.id - b.id

function item(id: number, key: number): Item {
  return { id, key, heapIndex: -1 }
}

/** heapIndex matches position, and no item is less than its parent. */
// Plain checks, not expect(), so the model runs stay fast; a failure names the slot.
function checkHeap(heap: Heap<Item>): void {
  for (let i = 0; i < heap.size; i++) {
    const it = heap.at(i)!
    if (it.heapIndex !== i) throw new Error(`slot ${i} holds heapIndex ${it.heapIndex}`)
    if (i > 0 && less(it, heap.at((i - 1) >>> 1)!)) throw new Error(`slot ${i} is less than its parent`)
  }
  if (heap.at(heap.size) !== undefined) throw new Error('item past the end')
}

describe('Heap', () => {
  it('is empty at first', () => {
    const heap = new Heap<Item>(less)
    expect(heap.size).toBe(0)
    expect(heap.peek()).toBeUndefined()
    expect(heap.pop()).toBeUndefined()
    expect(heap.at(0)).toBeUndefined()
  })

  it('pops in order, ties by id, and clears heapIndex', () => {
    const heap = new Heap<Item>(less)
    const items = [item(1, 5), item(2, 1), item(3, 5), item(4, 0), item(5, 1), item(6, 9)]
    for (const it of items) heap.push(it)
    checkHeap(heap)
    const out: number[] = []
    for (let it = heap.pop(); it !== undefined; it = heap.pop()) {
      expect(it.heapIndex).toBe(-1)
      out.push(it.id)
      checkHeap(heap)
    }
    expect(out).toEqual([4, 2, 5, 1, 3, 6])
  })

  it('removes the root, a leaf, the last item and a middle item', () => {
    const heap = new Heap<Item>(less)
    const items = Array.from({ length: 10 }, (_, i) => item(i, (i * 7) % 10))
    for (const it of items) heap.push(it)
    for (const victim of [heap.peek()!, heap.at(heap.size - 1)!, heap.at(2)!, heap.at(1)!]) {
      heap.remove(victim)
      expect(victim.heapIndex).toBe(-1)
      checkHeap(heap)
    }
    expect(heap.size).toBe(6)
  })

  it('remove sifts up when the moved last item is smaller than the hole', () => {
    // [0, 10, 1, 11, 12, 2, 3]: removing 12 (left subtree) moves the last item, 3, under 10.
    const heap = new Heap<Item>(less)
    const keys = [0, 10, 1, 11, 12, 2, 3]
    keys.forEach((key, id) => heap.push(item(id, key)))
    const victim = heap.at(4)!
    expect(victim.key).toBe(12)
    heap.remove(victim)
    checkHeap(heap)
    expect(heap.at(1)!.key).toBe(3)
  })

  it('remove and update are no-ops for an item in no heap', () => {
    const heap = new Heap<Item>(less)
    heap.push(item(1, 1))
    const outside = item(2, 0)
    heap.remove(outside)
    heap.update(outside)
    expect(heap.size).toBe(1)
    expect(outside.heapIndex).toBe(-1)
  })

  it('throws when given an item that lives in another heap', () => {
    const a = new Heap<Item>(less)
    const b = new Heap<Item>(less)
    a.push(item(1, 1))
    const x = item(2, 2)
    b.push(x)
    b.push(item(3, 3))
    b.push(item(4, 4))
    a.push(item(5, 5))
    const y = b.at(1)!
    expect(() => a.remove(y)).toThrow(/not in this heap/)
    expect(() => a.update(y)).toThrow(/not in this heap/)
    expect(a.size).toBe(2)
    expect(b.size).toBe(3)
  })

  it('update moves an item both ways', () => {
    const heap = new Heap<Item>(less)
    const items = Array.from({ length: 15 }, (_, i) => item(i, i))
    for (const it of items) heap.push(it)
    const leaf = items[14]!
    leaf.key = -1
    heap.update(leaf)
    checkHeap(heap)
    expect(heap.peek()).toBe(leaf)
    leaf.key = 100
    heap.update(leaf)
    checkHeap(heap)
    expect(heap.peek()).toBe(items[0])
  })

  for (const seed of [1, 2, 3, 0xbeef, 20240601]) {
    it(`matches a sorted-array model (seed ${seed})`, () => {
      const rand = prng(seed)
      const heap = new Heap<Item>(less)
      let model: Item[] = []
      const outside: Item[] = []
      let nextId = 1
      // Few distinct keys, so ties (broken by id) are common.
      const key = (): number => rand.int(rand.chance(0.5) ? 8 : 1000)

      for (let step = 0; step < 4000; step++) {
        const r = rand.next()
        if (r < 0.45 || model.length === 0) {
          const it = outside.length > 0 && rand.chance(0.3) ? outside.pop()! : item(nextId++, key())
          it.key = key()
          heap.push(it)
          model.push(it)
        } else if (r < 0.6) {
          const it = heap.pop()!
          model.sort(cmp)
          expect(it).toBe(model[0])
          model.shift()
          outside.push(it)
        } else if (r < 0.75) {
          const it = rand.pick(model)
          heap.remove(it)
          model = model.filter((m) => m !== it)
          outside.push(it)
          heap.remove(it) // second remove: no-op
        } else if (r < 0.95) {
          const it = rand.pick(model)
          it.key = rand.chance(0.5) ? key() : it.key + rand.int(21) - 10
          heap.update(it)
        } else {
          model.sort(cmp)
          expect(heap.peek()).toBe(model[0])
        }
        if (heap.size !== model.length) throw new Error(`step ${step}: size ${heap.size} != ${model.length}`)
        checkHeap(heap)
        const last = outside[outside.length - 1]
        if (last !== undefined && last.heapIndex !== -1) {
          throw new Error(`step ${step}: item out of the heap has an index`)
        }
      }
      model.sort(cmp)
      const drained: Item[] = []
      for (let it = heap.pop(); it !== undefined; it = heap.pop()) drained.push(it)
      expect(drained).toEqual(model)
    })
  }
})
