/**
 * Type-level test, checked by `tsc -p .` (part of `npm test`): a registry missing one op
 * kind must not type-check. If it ever does, the `@ts-expect-error` below is unused and tsc
 * fails, so deleting a registry entry can never go unnoticed.
 */
import { OPS, type OpRegistry } from '../../src/ops/registry.js';

const { conv: _removed, ...withoutConv } = OPS;
// @ts-expect-error a registry without its 'conv' entry is not an OpRegistry
export const incomplete: OpRegistry = withoutConv;

// An entry of the wrong kind is refused too: the lowering of 'pool' cannot stand in for 'conv'.
// @ts-expect-error
export const mismatched: OpRegistry = { ...OPS, conv: OPS.pool };
