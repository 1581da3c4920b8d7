import { describe, expect, it } from 'vitest';
import { ParamLayout } from '../src/runtime/kernel.js';
import { PAD_PARAMS } from '../src/shaders/layout.js';
import { SOFTMAX_PARAMS } from '../src/shaders/softmax.js';

/**
 * ParamLayout.pack is typed by the layout's field names. The type half of this file is
 * checked by `tsc -p .` (each @ts-expect-error must meet an error); vitest runs the rest.
 */

const L = new ParamLayout([['a', 'u32'], ['b', 'i32'], ['c', 'f32', 0.5]]);

// Never called: type checks only.
function typeChecks(): void {
  L.pack({ a: 1, b: -2 });
  L.pack({ a: 1, b: -2, c: 3 });
  // @ts-expect-error a required field is missing
  L.pack({ a: 1, c: 3 });
  // @ts-expect-error a misspelled field
  SOFTMAX_PARAMS.pack({ rows: 1, axis_len: 2, iner: 3 });
  const extra = { a: 1, b: 2, zz: 3 };
  // @ts-expect-error a field the layout lacks, in a variable
  L.pack(extra);
  // @ts-expect-error a field the layout lacks, through a spread
  L.pack({ ...extra });
  // Rank-indexed fields (`od${i}`) are typed by their pattern only.
  PAD_PARAMS.pack({ n: 1, rank: 1, value: 0, od0: 1, id0: 1, pb0: 0 });
  // @ts-expect-error a name outside the patterns
  PAD_PARAMS.pack({ n: 1, rank: 1, value: 0, od0: 1, xd0: 1 });
}

describe('ParamLayout', () => {
  it('packs by field order, with fallbacks for the fields that declare one', () => {
    void typeChecks;
    const words = L.pack({ a: 7, b: -2 });
    expect(words.length).toBe(4);
    const view = new DataView(words.buffer);
    expect([view.getUint32(0, true), view.getInt32(4, true), view.getFloat32(8, true)]).toEqual([7, -2, 0.5]);
    expect(new DataView(L.pack({ a: 7, b: -2, c: 4 }).buffer).getFloat32(8, true)).toBe(4);
    expect(L.wgsl()).toBe('struct Params {\n  a: u32,\n  b: i32,\n  c: f32,\n}\n');
  });

  it('still checks values at run time', () => {
    expect(() => L.pack({ a: -1, b: 0 })).toThrow(/not a u32/);
    expect(() => L.pack({ a: 1, b: Number.NaN })).toThrow(/'b' missing/);
    expect(() => L.pack({ a: 1 } as never)).toThrow(/'b' missing/);
  });
});
