import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, posix, relative, sep } from 'node:path';
import ts from 'typescript';

/**
 * The import graph of src/ and the rules it must keep (test/layering.test.ts). Pure functions
 * over sources and edges, so the self-test can feed them synthetic graphs; only `loadSrcGraph`
 * touches the file system.
 *
 * Layers, bottom up. A file may import from its own layer or any layer below it, never above.
 * `app` is src/model.ts and the other files directly in src/, plus the directories that sit
 * beside them (io, train). `entry` is the package's public entry points (src/index.ts,
 * src/node.ts): they re-export every layer, so they sit above all of them and nothing in src/
 * may import them.
 */
export const LAYERS = ['runtime', 'shaders', 'ops', 'onnx', 'app', 'cam', 'metrics', 'entry'] as const;
export type Layer = (typeof LAYERS)[number];

/** Directories of src/ at the `app` layer (besides the files directly in src/). */
export const APP_DIRS: readonly string[] = ['io', 'train'];

/** The package's entry points, relative to src/. */
export const ENTRY_FILES: readonly string[] = ['index.ts', 'node.ts'];

/** One import: `from` and `to` are paths relative to the repository root, with '/' separators. */
export interface ImportEdge {
  from: string;
  to: string;
  /** 1-based line of the import in `from`. */
  line: number;
  /** The specifier as written. */
  specifier: string;
  typeOnly: boolean;
}

export interface ModuleRef {
  specifier: string;
  line: number;
  typeOnly: boolean;
}

/**
 * Every module a TypeScript source refers to: `import … from`, `import type`, side-effect
 * `import '…'`, `export … from`, `export * from`, `import x = require('…')`, dynamic
 * `import('…')` and type-position `import('…').T`. Parsed, not pattern-matched, so specifiers
 * in comments and strings don't count.
 */
export function moduleRefs(fileName: string, source: string): ModuleRef[] {
  const sf = ts.createSourceFile(fileName, source, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const refs: ModuleRef[] = [];
  const add = (spec: ts.Node | undefined, typeOnly: boolean) => {
    if (!spec || !ts.isStringLiteralLike(spec)) return;
    refs.push({ specifier: spec.text, line: sf.getLineAndCharacterOfPosition(spec.getStart(sf)).line + 1, typeOnly });
  };
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node)) {
      const clause = node.importClause;
      const typeOnly = !!clause && (clause.isTypeOnly || (!clause.name && !!clause.namedBindings && ts.isNamedImports(clause.namedBindings)
        && clause.namedBindings.elements.length > 0 && clause.namedBindings.elements.every((e) => e.isTypeOnly)));
      add(node.moduleSpecifier, typeOnly);
    } else if (ts.isExportDeclaration(node)) {
      add(node.moduleSpecifier, node.isTypeOnly);
    } else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference)) {
      add(node.moduleReference.expression, node.isTypeOnly);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      add(node.arguments[0], false);
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) {
      add(node.argument.literal, true);
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return refs;
}

/**
 * The file a relative specifier names, from `from` (root-relative), given the set of files
 * that exist: `./x.js` → `x.ts` (ESM-style), then `x`, `x.ts`, `x/index.ts`. Null for bare
 * specifiers (packages, `node:`); `undefined` for a relative one that names no known file.
 */
export function resolveSpecifier(from: string, specifier: string, files: ReadonlySet<string>): string | null | undefined {
  if (!specifier.startsWith('./') && !specifier.startsWith('../')) return null;
  const base = posix.normalize(posix.join(posix.dirname(from), specifier));
  const candidates = [
    base.replace(/\.js$/, '.ts'), base.replace(/\.mjs$/, '.mts'), base, `${base}.ts`, `${base}/index.ts`,
  ];
  return candidates.find((c) => files.has(c));
}

/** The layer of a root-relative path under `srcDir`, or null when it has none (an unassigned directory). */
export function layerOf(path: string, srcDir = 'src'): Layer | null {
  const rel = posix.relative(srcDir, path);
  if (rel.startsWith('..')) return null;
  const parts = rel.split('/');
  if (parts.length === 1) return ENTRY_FILES.includes(parts[0]) ? 'entry' : 'app';
  const top = parts[0];
  if ((LAYERS as readonly string[]).includes(top) && top !== 'app' && top !== 'entry') return top as Layer;
  if (APP_DIRS.includes(top)) return 'app';
  return null;
}

export interface LayerViolation {
  edge: ImportEdge;
  fromLayer: Layer;
  toLayer: Layer;
}

/** Edges that import from a higher layer. */
export function layerViolations(edges: readonly ImportEdge[], srcDir = 'src'): LayerViolation[] {
  const out: LayerViolation[] = [];
  for (const edge of edges) {
    const fromLayer = layerOf(edge.from, srcDir);
    const toLayer = layerOf(edge.to, srcDir);
    if (!fromLayer || !toLayer) continue;
    if (LAYERS.indexOf(toLayer) > LAYERS.indexOf(fromLayer)) out.push({ edge, fromLayer, toLayer });
  }
  return out;
}

/**
 * Import cycles: one per strongly connected component with more than one file (or a file
 * importing itself), as the shortest cycle through the component's first file in sorted
 * order, `[a, b, …, a]`. Type-only imports count: a type cycle is still a cycle of modules.
 */
export function importCycles(edges: readonly ImportEdge[]): string[][] {
  const adj = new Map<string, Set<string>>();
  for (const e of edges) {
    if (!adj.has(e.from)) adj.set(e.from, new Set());
    if (!adj.has(e.to)) adj.set(e.to, new Set());
    adj.get(e.from)!.add(e.to);
  }
  const nodes = [...adj.keys()].sort();
  // Tarjan's strongly connected components, iterative (src/ can be deep).
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const comps: string[][] = [];
  let counter = 0;
  for (const root of nodes) {
    if (index.has(root)) continue;
    const work: { v: string; it: Iterator<string> }[] = [];
    const open = (v: string) => {
      index.set(v, counter);
      low.set(v, counter);
      counter++;
      stack.push(v);
      onStack.add(v);
      work.push({ v, it: [...adj.get(v)!].sort()[Symbol.iterator]() });
    };
    open(root);
    while (work.length > 0) {
      const top = work[work.length - 1];
      const next = top.it.next();
      if (!next.done) {
        const w = next.value;
        if (!index.has(w)) open(w);
        else if (onStack.has(w)) low.set(top.v, Math.min(low.get(top.v)!, index.get(w)!));
        continue;
      }
      work.pop();
      if (work.length > 0) {
        const parent = work[work.length - 1].v;
        low.set(parent, Math.min(low.get(parent)!, low.get(top.v)!));
      }
      if (low.get(top.v) === index.get(top.v)) {
        const comp: string[] = [];
        let w: string;
        do {
          w = stack.pop()!;
          onStack.delete(w);
          comp.push(w);
        } while (w !== top.v);
        comps.push(comp.sort());
      }
    }
  }
  const cycles: string[][] = [];
  for (const comp of comps) {
    const start = comp[0];
    if (comp.length === 1 && !adj.get(start)!.has(start)) continue;
    const inComp = new Set(comp);
    // Breadth-first from start back to start, inside the component.
    const prev = new Map<string, string>();
    const queue = [start];
    let found = false;
    for (let qi = 0; qi < queue.length && !found; qi++) {
      const v = queue[qi];
      for (const w of [...adj.get(v)!].sort()) {
        if (!inComp.has(w)) continue;
        if (w === start) {
          prev.set(start, v);
          found = true;
          break;
        }
        if (!prev.has(w)) {
          prev.set(w, v);
          queue.push(w);
        }
      }
    }
    const back: string[] = [];
    for (let v = prev.get(start)!; v !== start; v = prev.get(v)!) back.push(v);
    cycles.push([start, ...back.reverse(), start]);
  }
  return cycles.sort((a, b) => a[0].localeCompare(b[0]));
}

export function formatEdge(e: ImportEdge): string {
  return `${e.from}:${e.line} → ${e.to}${e.typeOnly ? ' (type-only)' : ''}  [import '${e.specifier}']`;
}

export interface SrcGraph {
  files: string[];
  edges: ImportEdge[];
  /** Relative specifiers that name no file. */
  unresolved: ImportEdge[];
}

/** Builds the import graph of a set of sources (paths root-relative, '/'-separated). */
export function importGraph(sources: ReadonlyMap<string, string>): SrcGraph {
  const files = new Set(sources.keys());
  const edges: ImportEdge[] = [];
  const unresolved: ImportEdge[] = [];
  for (const [from, text] of [...sources].sort(([a], [b]) => a.localeCompare(b))) {
    for (const ref of moduleRefs(from, text)) {
      const to = resolveSpecifier(from, ref.specifier, files);
      if (to === null) continue;
      const edge = { from, to: to ?? ref.specifier, line: ref.line, specifier: ref.specifier, typeOnly: ref.typeOnly };
      (to === undefined ? unresolved : edges).push(edge);
    }
  }
  return { files: [...files].sort(), edges, unresolved };
}

/** Every .ts file under `root/srcDir`, read. */
export function loadSources(root: string, srcDir = 'src'): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const p = join(dir, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) out.set(relative(root, p).split(sep).join('/'), readFileSync(p, 'utf8'));
    }
  };
  if (existsSync(join(root, srcDir))) walk(join(root, srcDir));
  return out;
}

export const REPO_ROOT = dirname(dirname(import.meta.dirname));
