/**
 * Open-addressing hash table from integer lattice keys (`keySize` coordinates) to dense ids 0..size-1.
 * Everything lives in typed arrays so building a lattice for ~10^6 vertices allocates no per-key objects.
 * Same role as the HashTable in densecrf's permutohedral.cpp; the hash function differs, which changes
 * nothing observable because ids are handed out in insertion order either way.
 */
export class LatticeHashTable {
  readonly keySize: number;
  private keys: Int32Array;
  /** slot -> entry id, -1 when empty; capacity is a power of two so the probe wraps with a mask. */
  private slots: Int32Array;
  private mask: number;
  private count = 0;

  constructor(keySize: number, expectedEntries: number) {
    this.keySize = keySize;
    let capacity = 16;
    while (capacity < 2 * expectedEntries) capacity *= 2;
    this.slots = new Int32Array(capacity).fill(-1);
    this.mask = capacity - 1;
    this.keys = new Int32Array((capacity / 2) * keySize);
  }

  get size(): number {
    return this.count;
  }

  /** Copies the key of entry `id` into `out`. */
  copyKey(id: number, out: Int32Array): void {
    const ks = this.keySize;
    for (let i = 0, b = id * ks; i < ks; i++) out[i] = this.keys[b + i];
  }

  /** Id of `key`; when absent, inserts it if `create`, else returns -1. */
  find(key: Int32Array, create: boolean): number {
    if (create && 2 * this.count >= this.slots.length) this.grow();
    const ks = this.keySize;
    const keys = this.keys;
    const slots = this.slots;
    const mask = this.mask;
    let h = hashKey(key, 0, ks) & mask;
    for (;;) {
      const e = slots[h];
      if (e === -1) {
        if (!create) return -1;
        const id = this.count++;
        for (let i = 0, b = id * ks; i < ks; i++) keys[b + i] = key[i];
        slots[h] = id;
        return id;
      }
      const base = e * ks;
      let same = true;
      for (let i = 0; i < ks; i++) {
        if (keys[base + i] !== key[i]) {
          same = false;
          break;
        }
      }
      if (same) return e;
      h = (h + 1) & mask;
    }
  }

  private grow(): void {
    const ks = this.keySize;
    const capacity = this.slots.length * 2;
    const keys = new Int32Array((capacity / 2) * ks);
    keys.set(this.keys.subarray(0, this.count * ks));
    const slots = new Int32Array(capacity).fill(-1);
    const mask = capacity - 1;
    for (let id = 0; id < this.count; id++) {
      let h = hashKey(keys, id * ks, ks) & mask;
      while (slots[h] !== -1) h = (h + 1) & mask;
      slots[h] = id;
    }
    this.keys = keys;
    this.slots = slots;
    this.mask = mask;
  }
}

/**
 * densecrf's multiply-accumulate hash, plus a final avalanche: lattice keys are all congruent modulo d+1,
 * so without mixing the low bits (the ones the power-of-two mask keeps) would cluster.
 */
function hashKey(keys: Int32Array, offset: number, keySize: number): number {
  let h = 0;
  for (let i = 0; i < keySize; i++) h = Math.imul(h + keys[offset + i], 1664525);
  h ^= h >>> 16;
  h = Math.imul(h, 0x45d9f3b);
  h ^= h >>> 16;
  return h >>> 0;
}
