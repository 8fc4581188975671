// A restricted pickle virtual machine. It executes nothing: GLOBAL/STACK_GLOBAL may only name globals the
// caller allows, and calling (REDUCE/NEWOBJ) is only possible on those, whose behaviour is implemented here
// in JS. Everything else a pickle can express (INST/OBJ, extension registry, out-of-band buffers, arbitrary
// classes) is refused with an error naming the file.
//
// Python values map to JS as follows:
//   None -> null, bool -> boolean, int -> number (bigint beyond 2^53), float -> number, str -> string,
//   bytes/bytearray -> Uint8Array, list -> array, tuple -> frozen array, dict -> Map, set/frozenset -> Set.

/** An allowed global that can be called by REDUCE/NEWOBJ. */
export class PyCallable {
  constructor(readonly qualname: string, readonly call: (args: unknown[]) => unknown) {}
}

/** Resolves an allowed global, or returns undefined to refuse it. */
export type GlobalResolver = (module: string, name: string) => unknown;

export interface PickleOptions {
  /** Used in error messages. */
  file: string;
  findGlobal: GlobalResolver;
  /** Handles BINPERSID/PERSID; without it persistent ids are refused. */
  persistentLoad?: (pid: unknown) => unknown;
}

export function isTuple(x: unknown): x is readonly unknown[] {
  return Array.isArray(x) && Object.isFrozen(x);
}

const tuple = (items: unknown[]): readonly unknown[] => Object.freeze(items);

/** Python int -> number when exactly representable, else bigint. */
function pyInt(v: bigint): number | bigint {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

function describe(x: unknown): string {
  if (x === null) return 'None';
  if (x instanceof PyCallable) return x.qualname;
  if (x instanceof Map) return 'dict';
  if (isTuple(x)) return 'tuple';
  if (Array.isArray(x)) return 'list';
  if (x instanceof Uint8Array) return 'bytes';
  if (x instanceof Set) return 'set';
  if (typeof x === 'object') return x.constructor?.name ?? 'object';
  return typeof x;
}

const utf8 = new TextDecoder('utf-8');

/** A pickle read in pieces (an entry inflated as it is read): `next` returns the following bytes, null at the end. */
export interface ByteStream {
  /** Total bytes the stream will give. */
  readonly size: number;
  next(): Uint8Array | null;
}

/**
 * Run a pickle and return the object it builds. From a stream only the bytes of the opcode being read are held
 * (plus one piece), so a pickle's size costs no memory beyond the objects it builds.
 */
export function unpickle(data: Uint8Array | ByteStream, opts: PickleOptions): unknown {
  const { file } = opts;
  const src: ByteStream = data instanceof Uint8Array ? once(data) : data;
  const total = src.size;
  let buf = new Uint8Array(0);
  let pos = 0; // in buf
  let base = 0; // stream offset of buf[0]
  let opPos = 0;
  let stack: unknown[] = [];
  const metastack: unknown[][] = [];
  const memo = new Map<number, unknown>();

  // A function declaration, so TypeScript's control flow knows it never returns.
  function fail(what: string): never {
    throw new Error(`${file}: pickle: ${what} (at byte ${opPos})`);
  }
  /** Appends the next piece, dropping what was consumed; false at the end of the stream. */
  const more = (): boolean => {
    const piece = src.next();
    if (!piece) return false;
    const rest = buf.length - pos;
    const joined = new Uint8Array(rest + piece.length);
    joined.set(buf.subarray(pos));
    joined.set(piece, rest);
    base += pos;
    buf = joined;
    pos = 0;
    return true;
  };
  const need = (n: number) => {
    if (n < 0 || base + pos + n > total) fail(`truncated: needs ${n} more bytes, ${total - base - pos} left`);
    while (buf.length - pos < n) if (!more()) fail(`truncated: needs ${n} more bytes, the stream ended`);
  };
  const view = (n: number) => { need(n); const dv = new DataView(buf.buffer, buf.byteOffset + pos, n); pos += n; return dv; };
  const u8 = () => { need(1); return buf[pos++]!; };
  const u16 = () => view(2).getUint16(0, true);
  const u32 = () => view(4).getUint32(0, true);
  const i32 = () => view(4).getInt32(0, true);
  const u64 = () => {
    const v = view(8).getBigUint64(0, true);
    if (v > BigInt(total)) fail(`length ${v} exceeds the pickle size`);
    return Number(v);
  };
  const take = (n: number) => { need(n); const b = buf.subarray(pos, pos + n); pos += n; return b; };
  const lineBytes = () => {
    let end = buf.indexOf(0x0a, pos);
    while (end < 0) {
      const searched = buf.length - pos;
      if (!more()) fail('truncated: unterminated text argument');
      end = buf.indexOf(0x0a, pos + searched);
    }
    const b = buf.subarray(pos, end);
    pos = end + 1;
    return b;
  };
  const line = () => utf8.decode(lineBytes());

  const push = (x: unknown) => { stack.push(x); };
  const pop = (): unknown => {
    if (stack.length === 0) fail('stack underflow');
    return stack.pop();
  };
  const top = (): unknown => {
    if (stack.length === 0) fail('stack underflow');
    return stack[stack.length - 1];
  };
  const popMark = (): unknown[] => {
    const items = stack;
    const prev = metastack.pop();
    if (!prev) fail('MARK expected on the stack');
    stack = prev!;
    return items;
  };
  const memoGet = (i: number) => {
    if (!memo.has(i)) fail(`memo key ${i} not defined`);
    return memo.get(i);
  };
  const memoPut = (i: number) => { memo.set(i, top()); };

  const global = (module: string, name: string) => {
    const g = opts.findGlobal(module, name);
    if (g === undefined) {
      throw new Error(`${file}: refusing to load global "${module}.${name}" from the pickle: only the globals a torch state dict needs are allowed (nothing was executed)`);
    }
    return g;
  };
  const call = (fn: unknown, args: unknown, op: string) => {
    if (!(fn instanceof PyCallable)) return fail(`${op} on non-callable ${describe(fn)}`);
    if (!Array.isArray(args)) return fail(`${op} arguments must be a tuple, got ${describe(args)}`);
    try {
      return fn.call([...args]);
    } catch (e) {
      return fail(`${fn.qualname}: ${(e as Error).message}`);
    }
  };
  const asList = (x: unknown, op: string): unknown[] => {
    if (!Array.isArray(x) || isTuple(x)) fail(`${op} on ${describe(x)}, expected a list`);
    return x as unknown[];
  };
  const asDict = (x: unknown, op: string): Map<unknown, unknown> => {
    if (!(x instanceof Map)) fail(`${op} on ${describe(x)}, expected a dict`);
    return x as Map<unknown, unknown>;
  };
  const asSet = (x: unknown, op: string): Set<unknown> => {
    if (!(x instanceof Set)) fail(`${op} on ${describe(x)}, expected a set`);
    return x as Set<unknown>;
  };
  const setItems = (d: Map<unknown, unknown>, items: unknown[]) => {
    if (items.length % 2) fail('SETITEMS with an odd number of items');
    for (let i = 0; i < items.length; i += 2) d.set(items[i], items[i + 1]);
  };
  const persistent = (pid: unknown) => {
    if (!opts.persistentLoad) return fail('persistent ids are not allowed here');
    try {
      return opts.persistentLoad(pid);
    } catch (e) {
      return fail(`persistent id: ${(e as Error).message}`);
    }
  };
  const textInt = (s: string, what: string): bigint => {
    const t = s.endsWith('L') ? s.slice(0, -1) : s;
    if (!/^[+-]?\d+$/.test(t)) fail(`invalid ${what} ${JSON.stringify(s.slice(0, 40))}`);
    return BigInt(t);
  };

  for (;;) {
    opPos = base + pos;
    const op = u8();
    switch (op) {
      case 0x80: { // PROTO
        const v = u8();
        if (v > 5) fail(`unsupported pickle protocol ${v}`);
        break;
      }
      case 0x95: u64(); break; // FRAME: only a read-ahead hint
      case 0x2e: { // STOP
        const result = pop();
        return result;
      }
      case 0x28: metastack.push(stack); stack = []; break; // MARK
      case 0x30: pop(); break; // POP
      case 0x31: popMark(); break; // POP_MARK
      case 0x32: push(top()); break; // DUP

      // Constants and numbers.
      case 0x4e: push(null); break; // NONE
      case 0x88: push(true); break; // NEWTRUE
      case 0x89: push(false); break; // NEWFALSE
      case 0x4a: push(i32()); break; // BININT
      case 0x4b: push(u8()); break; // BININT1
      case 0x4d: push(u16()); break; // BININT2
      case 0x8a: case 0x8b: { // LONG1, LONG4: little-endian two's complement
        const n = op === 0x8a ? u8() : i32();
        if (n < 0) fail('negative LONG4 length');
        const b = take(n);
        let v = 0n;
        for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]!);
        if (n > 0 && b[n - 1]! & 0x80) v -= 1n << BigInt(8 * n);
        push(pyInt(v));
        break;
      }
      case 0x49: { // INT (text); protocol 0 spells bools as I01/I00
        const s = line();
        push(s === '01' ? true : s === '00' ? false : pyInt(textInt(s, 'INT')));
        break;
      }
      case 0x4c: push(pyInt(textInt(line(), 'LONG'))); break; // LONG (text)
      case 0x47: push(view(8).getFloat64(0, false)); break; // BINFLOAT, big-endian
      case 0x46: { // FLOAT (text, Python repr: also inf/-inf/nan)
        const s = line().trim();
        if (/^[+-]?inf(inity)?$/i.test(s)) push(s.startsWith('-') ? -Infinity : Infinity);
        else if (/^[+-]?nan$/i.test(s)) push(NaN);
        else if (/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(s)) push(Number(s));
        else fail(`invalid FLOAT ${JSON.stringify(s.slice(0, 40))}`);
        break;
      }

      // Strings and bytes.
      case 0x56: push(rawUnicodeEscape(latin1(lineBytes()))); break; // UNICODE (protocol 0 text)
      case 0x58: push(utf8.decode(take(u32()))); break; // BINUNICODE
      case 0x8c: push(utf8.decode(take(u8()))); break; // SHORT_BINUNICODE
      case 0x8d: push(utf8.decode(take(u64()))); break; // BINUNICODE8
      case 0x54: { const n = i32(); if (n < 0) fail('negative BINSTRING length'); push(latin1(take(n))); break; } // BINSTRING (py2 str)
      case 0x55: push(latin1(take(u8()))); break; // SHORT_BINSTRING
      // Copies into a plain Uint8Array (the input may be a Buffer, whose slice() would share memory).
      case 0x42: push(new Uint8Array(take(u32()))); break; // BINBYTES
      case 0x43: push(new Uint8Array(take(u8()))); break; // SHORT_BINBYTES
      case 0x8e: case 0x96: push(new Uint8Array(take(u64()))); break; // BINBYTES8, BYTEARRAY8

      // Containers.
      case 0x5d: push([]); break; // EMPTY_LIST
      case 0x29: push(tuple([])); break; // EMPTY_TUPLE
      case 0x7d: push(new Map()); break; // EMPTY_DICT
      case 0x8f: push(new Set()); break; // EMPTY_SET
      case 0x6c: push(popMark()); break; // LIST
      case 0x74: push(tuple(popMark())); break; // TUPLE
      case 0x85: push(tuple([pop()])); break; // TUPLE1
      case 0x86: { const b = pop(); const a = pop(); push(tuple([a, b])); break; } // TUPLE2
      case 0x87: { const c = pop(); const b = pop(); const a = pop(); push(tuple([a, b, c])); break; } // TUPLE3
      case 0x64: { const d = new Map(); setItems(d, popMark()); push(d); break; } // DICT
      case 0x91: push(new Set(popMark())); break; // FROZENSET
      case 0x61: { const v = pop(); asList(top(), 'APPEND').push(v); break; } // APPEND
      case 0x65: { const items = popMark(); const l = asList(top(), 'APPENDS'); for (const x of items) l.push(x); break; } // APPENDS (no spread: a huge batch would overflow the call stack)
      case 0x73: { const v = pop(); const k = pop(); asDict(top(), 'SETITEM').set(k, v); break; } // SETITEM
      case 0x75: { const items = popMark(); setItems(asDict(top(), 'SETITEMS'), items); break; } // SETITEMS
      case 0x90: { const items = popMark(); const s = asSet(top(), 'ADDITEMS'); for (const x of items) s.add(x); break; } // ADDITEMS

      // Memo.
      case 0x71: memoPut(u8()); break; // BINPUT
      case 0x72: memoPut(u32()); break; // LONG_BINPUT
      case 0x70: memoPut(Number(textInt(line(), 'PUT'))); break; // PUT
      case 0x94: memoPut(memo.size); break; // MEMOIZE
      case 0x68: push(memoGet(u8())); break; // BINGET
      case 0x6a: push(memoGet(u32())); break; // LONG_BINGET
      case 0x67: push(memoGet(Number(textInt(line(), 'GET')))); break; // GET

      // Globals and calls: only allowed globals, only their JS implementations.
      case 0x63: { const module = line(); const name = line(); push(global(module, name)); break; } // GLOBAL
      case 0x93: { // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') fail('STACK_GLOBAL needs two strings');
        push(global(module as string, name as string));
        break;
      }
      case 0x52: { const args = pop(); const fn = pop(); push(call(fn, args, 'REDUCE')); break; } // REDUCE
      case 0x81: { const args = pop(); const cls = pop(); push(call(cls, args, 'NEWOBJ')); break; } // NEWOBJ
      case 0x92: { // NEWOBJ_EX
        const kwargs = pop();
        const args = pop();
        const cls = pop();
        if (!(kwargs instanceof Map) || kwargs.size) fail('NEWOBJ_EX with keyword arguments is not supported');
        push(call(cls, args, 'NEWOBJ_EX'));
        break;
      }
      case 0x62: { // BUILD
        const state = pop();
        const obj = top();
        // A pickled OrderedDict carries its instance __dict__ here (a state dict's `_metadata` with module
        // versions); nothing needs it, so it is dropped. Setting state on anything else is refused.
        if (!(obj instanceof Map)) fail(`BUILD on ${describe(obj)} is not supported`);
        if (state !== null && !(state instanceof Map)) fail(`BUILD with ${describe(state)} state is not supported`);
        break;
      }
      case 0x51: push(persistent(pop())); break; // BINPERSID
      case 0x50: push(persistent(line())); break; // PERSID

      case 0x69: case 0x6f: fail(`opcode ${op === 0x69 ? 'INST' : 'OBJ'} (instantiates arbitrary classes) is not allowed`);
      case 0x82: case 0x83: case 0x84: fail('extension registry opcodes (EXT1/EXT2/EXT4) are not allowed');
      case 0x97: case 0x98: fail('out-of-band buffers (NEXT_BUFFER/READONLY_BUFFER) are not supported');
      default: fail(`unsupported opcode 0x${op.toString(16).padStart(2, '0')}`);
    }
  }
}

function once(data: Uint8Array): ByteStream {
  let given = false;
  return { size: data.length, next: () => (given ? null : ((given = true), data)) };
}

function latin1(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i++) s += String.fromCharCode(b[i]!);
  return s;
}

/** Protocol 0 strings: raw-unicode-escape, latin-1 text in which only \uXXXX and \UXXXXXXXX are escapes. */
function rawUnicodeEscape(s: string): string {
  return s.replace(/\\u([0-9a-fA-F]{4})|\\U([0-9a-fA-F]{8})/g, (m, u: string | undefined, U: string | undefined) => {
    const cp = parseInt((u ?? U)!, 16);
    return cp <= 0x10ffff ? String.fromCodePoint(cp) : m;
  });
}
