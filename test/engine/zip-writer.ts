// A minimal zip writer for building test archives (and the hostile inputs of bench:hostile).
import * as zlib from 'node:zlib';

const enc = new TextEncoder();

export interface ZEntry {
  name: string;
  data: Uint8Array;
  method?: number;
  crc?: number;
  flags?: number;
  uncompressedSize?: number;
  /** The entry's bytes as stored, already deflated (with `crc` and `uncompressedSize`): for archives too big to build whole. */
  compressed?: Uint8Array;
}

/** A minimal zip writer (STORED/DEFLATE, optional ZIP64 records) for building test archives. */
export function makeZip(entries: ZEntry[], opts: { zip64?: boolean; comment?: string } = {}): Uint8Array {
  const parts: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  let offset = 0;
  const push = (b: Uint8Array) => { parts.push(b); offset += b.length; };
  for (const e of entries) {
    const name = enc.encode(e.name);
    const method = e.method ?? 0;
    const comp = e.compressed ?? (method === 8 ? new Uint8Array(zlib.deflateRawSync(e.data)) : e.data);
    const crc = e.crc ?? zlib.crc32(e.data);
    const usize = e.uncompressedSize ?? e.data.length;
    const local = new Uint8Array(30 + name.length);
    const lv = new DataView(local.buffer);
    lv.setUint32(0, 0x04034b50, true); lv.setUint16(4, 20, true); lv.setUint16(6, e.flags ?? 0, true);
    lv.setUint16(8, method, true); lv.setUint32(14, crc, true); lv.setUint32(18, comp.length, true);
    lv.setUint32(22, usize, true); lv.setUint16(26, name.length, true); local.set(name, 30);
    const localOffset = offset;
    push(local);
    push(comp);
    const extra = opts.zip64 ? new Uint8Array(4 + 24) : new Uint8Array(0);
    if (opts.zip64) {
      const xv = new DataView(extra.buffer);
      xv.setUint16(0, 1, true); xv.setUint16(2, 24, true);
      xv.setBigUint64(4, BigInt(usize), true); xv.setBigUint64(12, BigInt(comp.length), true); xv.setBigUint64(20, BigInt(localOffset), true);
    }
    const c = new Uint8Array(46 + name.length + extra.length);
    const cv = new DataView(c.buffer);
    cv.setUint32(0, 0x02014b50, true); cv.setUint16(4, 45, true); cv.setUint16(6, 45, true); cv.setUint16(8, e.flags ?? 0, true);
    cv.setUint16(10, method, true); cv.setUint32(16, crc, true);
    cv.setUint32(20, opts.zip64 ? 0xffffffff : comp.length, true); cv.setUint32(24, opts.zip64 ? 0xffffffff : usize, true);
    cv.setUint16(28, name.length, true); cv.setUint16(30, extra.length, true);
    cv.setUint32(42, opts.zip64 ? 0xffffffff : localOffset, true);
    c.set(name, 46); c.set(extra, 46 + name.length);
    central.push(c);
  }
  const cdOffset = offset;
  for (const c of central) push(c);
  const cdSize = offset - cdOffset;
  if (opts.zip64) {
    const rec = new Uint8Array(56);
    const rv = new DataView(rec.buffer);
    rv.setUint32(0, 0x06064b50, true); rv.setBigUint64(4, 44n, true); rv.setUint16(12, 45, true); rv.setUint16(14, 45, true);
    rv.setBigUint64(24, BigInt(entries.length), true); rv.setBigUint64(32, BigInt(entries.length), true);
    rv.setBigUint64(40, BigInt(cdSize), true); rv.setBigUint64(48, BigInt(cdOffset), true);
    const recOffset = offset;
    push(rec);
    const loc = new Uint8Array(20);
    const lv = new DataView(loc.buffer);
    lv.setUint32(0, 0x07064b50, true); lv.setBigUint64(8, BigInt(recOffset), true); lv.setUint32(16, 1, true);
    push(loc);
  }
  const comment = enc.encode(opts.comment ?? '');
  const eocd = new Uint8Array(22 + comment.length);
  const ev = new DataView(eocd.buffer);
  ev.setUint32(0, 0x06054b50, true);
  ev.setUint16(8, opts.zip64 ? 0xffff : entries.length, true); ev.setUint16(10, opts.zip64 ? 0xffff : entries.length, true);
  ev.setUint32(12, opts.zip64 ? 0xffffffff : cdSize, true); ev.setUint32(16, opts.zip64 ? 0xffffffff : cdOffset, true);
  ev.setUint16(20, comment.length, true); eocd.set(comment, 22);
  push(eocd);
  const out = new Uint8Array(offset);
  let p = 0;
  for (const b of parts) { out.set(b, p); p += b.length; }
  return out;
}
