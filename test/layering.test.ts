import { describe, expect, it } from 'vitest';
import {
  formatEdge, type ImportEdge, importCycles, importGraph, layerOf, layerViolations, loadSources, moduleRefs, REPO_ROOT,
  resolveSpecifier,
} from './helpers/layering.js';

/**
 * src/ keeps its layers (runtime → shaders → ops → onnx → model.ts & co. → cam → metrics,
 * each importing only from itself and below) and has no import cycle, type-only imports
 * included. Failures print every offending edge as `file:line → target`.
 */

const graph = importGraph(loadSources(REPO_ROOT));

describe('src/ import graph', () => {
  it('parses a plausible graph', () => {
    expect(graph.files.length).toBeGreaterThan(50);
    expect(graph.edges.length).toBeGreaterThan(200);
  });

  it('every relative import resolves to a file', () => {
    const bad = graph.unresolved.map(formatEdge);
    if (bad.length) console.error(`unresolved imports:\n  ${bad.join('\n  ')}`);
    expect(bad).toEqual([]);
  });

  it('every file under src/ has a layer', () => {
    expect(graph.files.filter((f) => layerOf(f) === null)).toEqual([]);
  });

  it('no file imports from a higher layer', () => {
    const bad = layerViolations(graph.edges).map((v) => `${v.fromLayer} → ${v.toLayer}: ${formatEdge(v.edge)}`);
    if (bad.length) console.error(`upward imports (${bad.length}):\n  ${bad.join('\n  ')}`);
    expect(bad).toEqual([]);
  });

  it('no import cycle', () => {
    const cycles = importCycles(graph.edges).map((c) => c.join(' → '));
    if (cycles.length) console.error(`import cycles (${cycles.length}):\n  ${cycles.join('\n  ')}`);
    expect(cycles).toEqual([]);
  });
});

// The checker itself, on synthetic sources: it must be able to fail.
describe('layering checker', () => {
  const edge = (from: string, to: string, typeOnly = false): ImportEdge => ({ from, to, line: 1, specifier: to, typeOnly });

  it('finds every kind of module reference, and none in comments or strings', () => {
    const src = [
      "import { a } from './a.js';",
      "import type { B } from './b.js';",
      "import { type C, type D } from './c.js';",
      "import './side.js';",
      "export { e } from './e.js';",
      "export * from './f.js';",
      "export type { G } from './g.js';",
      "import h = require('./h.js');",
      "const i = await import('./i.js');",
      "let j: import('./j.js').J;",
      "// import { k } from './k.js';",
      "const s = \"import { l } from './l.js'\";",
      "import fs from 'node:fs';",
    ].join('\n');
    const refs = moduleRefs('src/x.ts', src);
    expect(refs.map((r) => r.specifier)).toEqual(['./a.js', './b.js', './c.js', './side.js', './e.js', './f.js', './g.js', './h.js', './i.js', './j.js', 'node:fs']);
    expect(refs.filter((r) => r.typeOnly).map((r) => r.specifier)).toEqual(['./b.js', './c.js', './g.js', './j.js']);
    expect(refs.find((r) => r.specifier === './i.js')!.line).toBe(9);
  });

  it('resolves .js specifiers to .ts files, directories to index.ts, and skips packages', () => {
    const files = new Set(['src/ops/conv.ts', 'src/runtime/index.ts', 'src/model.ts']);
    expect(resolveSpecifier('src/ops/x.ts', './conv.js', files)).toBe('src/ops/conv.ts');
    expect(resolveSpecifier('src/ops/x.ts', '../runtime', files)).toBe('src/runtime/index.ts');
    expect(resolveSpecifier('src/ops/x.ts', '../model.js', files)).toBe('src/model.ts');
    expect(resolveSpecifier('src/ops/x.ts', './nope.js', files)).toBeUndefined();
    expect(resolveSpecifier('src/ops/x.ts', 'webgpu', files)).toBeNull();
  });

  it('assigns layers', () => {
    expect(layerOf('src/runtime/device.ts')).toBe('runtime');
    expect(layerOf('src/model.ts')).toBe('app');
    expect(layerOf('src/index.ts')).toBe('entry');
    expect(layerOf('src/node.ts')).toBe('entry');
    expect(layerOf('src/train/net.ts')).toBe('app');
    expect(layerOf('src/metrics/x.ts')).toBe('metrics');
    expect(layerOf('src/unknown/x.ts')).toBeNull();
  });

  it('detects a synthetic upward import, and allows same-layer and downward ones', () => {
    const edges = [
      edge('src/ops/conv.ts', 'src/runtime/shape.ts'),
      edge('src/ops/conv.ts', 'src/ops/types.ts'),
      edge('src/shaders/gemm.ts', 'src/ops/activation.ts', true),
      edge('src/runtime/device.ts', 'src/model.ts'),
      edge('src/cam/gradcam.ts', 'src/metrics/insertion.ts'),
      edge('src/metrics/insertion.ts', 'src/cam/gradcam.ts'),
    ];
    const v = layerViolations(edges);
    expect(v.map((x) => `${x.edge.from}>${x.edge.to}`)).toEqual([
      'src/shaders/gemm.ts>src/ops/activation.ts',
      'src/runtime/device.ts>src/model.ts',
      'src/cam/gradcam.ts>src/metrics/insertion.ts',
    ]);
    expect(v[0]).toMatchObject({ fromLayer: 'shaders', toLayer: 'ops' });
  });

  it('detects synthetic cycles and reports their paths', () => {
    const edges = [
      edge('a.ts', 'b.ts'), edge('b.ts', 'c.ts'), edge('c.ts', 'a.ts', true), edge('c.ts', 'd.ts'),
      edge('d.ts', 'e.ts'),
      edge('s.ts', 's.ts'),
      edge('x.ts', 'y.ts'), edge('y.ts', 'x.ts'), edge('x.ts', 'z.ts'), edge('z.ts', 'y.ts'),
    ];
    expect(importCycles(edges)).toEqual([['a.ts', 'b.ts', 'c.ts', 'a.ts'], ['s.ts', 's.ts'], ['x.ts', 'y.ts', 'x.ts']]);
    expect(importCycles(edges.filter((e) => e.from !== 'c.ts' && e.from !== 's.ts' && e.from !== 'y.ts'))).toEqual([]);
  });
});
