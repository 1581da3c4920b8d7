import { Model } from '../model.js';
import type { IrGraph, IrNode } from '../onnx/ir.js';
import { attrNumber } from '../onnx/ir.js';
import { nodeModulePath } from '../onnx/resolve.js';
import { InputError } from '../runtime/errors.js';
import { type HostTensor, hostSize, isFloatType } from '../runtime/host-tensor.js';
import { Rng } from '../train/rng.js';

/**
 * Cascading randomization (Adebayo et al. 2018; SPEC §2; Quantus's MPRT with
 * layer_order 'top_down'): copies of a model whose parameterized layers are re-initialized
 * from the output backwards, cumulatively — copy k has its last k layers re-initialized.
 *
 * Re-initialization follows what torch's `reset_parameters` does (and Quantus calls):
 * - Conv and dense weights: kaiming_uniform_(a = √5), i.e. U(−1/√fan_in, 1/√fan_in) with
 *   fan_in = (in channels / groups)·kh·kw for a Conv, the input features for Gemm/MatMul;
 *   their biases U(−1/√fan_in, 1/√fan_in) with the weight's fan_in.
 * - BatchNormalization: what its reset_parameters does — scale 1, bias 0, running mean 0,
 *   running variance 1 (the layer becomes x/√(1 + ε)).
 * The values come from the seeded generator of src/train/rng.ts, one stream per layer
 * derived from (seed, node name): a layer gets the same values in every copy, so copy k + 1
 * is copy k with one more layer re-initialized, and the same seed gives the same copies. The
 * values are not torch's (its generator is not reproduced); their distribution is.
 *
 * A layer counts when its weight is an initializer: Conv (input 1, bias input 2), Gemm
 * (input 1, bias input 2), MatMul (a constant right operand; the bias of a separate Add is
 * left alone), BatchNormalization (inputs 1–4). Models exported with BatchNorm folded into
 * the preceding conv (fashion-resnet) have no BatchNormalization nodes: re-initializing such a
 * conv re-initializes the folded pair as one torch conv would be.
 */

export type ParameterizedOpType = 'Conv' | 'Gemm' | 'MatMul' | 'BatchNormalization';

export type ParameterRole = 'weight' | 'bias' | 'scale' | 'mean' | 'variance';

export interface LayerParameter {
  role: ParameterRole;
  /** Which input of the node it is. */
  input: number;
  /** The initializer's name in the original graph. */
  initializer: string;
  dims: number[];
}

export interface ParameterizedLayer {
  /** The ONNX node's name. */
  node: string;
  opType: ParameterizedOpType;
  /** The torch module path recovered from the node name, when it has one (`features.8`, `layer2.0.conv1`). */
  module: string | null;
  /** Its position in the graph's node list. */
  index: number;
  params: LayerParameter[];
  /** Fan-in of the weight for the uniform bound 1/√fan_in (null for BatchNormalization). */
  fanIn: number | null;
}

export interface RandomizationOptions {
  /** Seed of the re-initialized values (default 0). */
  seed?: number;
  /**
   * Restrict the cascade to these layers (node names or torch module paths), kept in graph
   * order; default every parameterized layer.
   */
  layers?: readonly string[];
}

export interface RandomizationStep {
  /** 1…L: how many layers, counted from the output, are re-initialized in `model`. */
  step: number;
  /** The layer this step added. */
  layer: ParameterizedLayer;
  /** Every layer re-initialized in `model`, from the output backwards. */
  randomized: ParameterizedLayer[];
  /** The copy; the generator disposes it when the next step is asked for or the loop ends. */
  model: Model;
}

function initializerAt(graph: IrGraph, node: IrNode, input: number): HostTensor | null {
  const name = node.inputs[input];
  if (!name) return null;
  const t = graph.initializers.get(name);
  return t && isFloatType(t.dtype) ? t : null;
}

function layerOf(graph: IrGraph, node: IrNode, index: number): ParameterizedLayer | null {
  const param = (role: ParameterRole, input: number): LayerParameter | null => {
    const t = initializerAt(graph, node, input);
    return t ? { role, input, initializer: node.inputs[input], dims: [...t.dims] } : null;
  };
  const base = { node: node.name, module: nodeModulePath(node.name), index };
  switch (node.opType) {
    case 'Conv': {
      const w = param('weight', 1);
      if (!w || w.dims.length < 3) return null;
      const b = param('bias', 2);
      return { ...base, opType: 'Conv', params: b ? [w, b] : [w], fanIn: hostSize(w.dims.slice(1)) };
    }
    case 'Gemm': {
      const w = param('weight', 1);
      if (!w || w.dims.length !== 2) return null;
      const b = param('bias', 2);
      const fanIn = attrNumber(node, 'transB', 0) ? w.dims[1] : w.dims[0];
      return { ...base, opType: 'Gemm', params: b ? [w, b] : [w], fanIn };
    }
    case 'MatMul': {
      const w = param('weight', 1);
      if (!w || w.dims.length < 2) return null;
      return { ...base, opType: 'MatMul', params: [w], fanIn: w.dims[w.dims.length - 2] };
    }
    case 'BatchNormalization': {
      const ps = [param('scale', 1), param('bias', 2), param('mean', 3), param('variance', 4)];
      if (ps.some((p) => p === null)) return null;
      return { ...base, opType: 'BatchNormalization', params: ps as LayerParameter[], fanIn: null };
    }
    default:
      return null;
  }
}

/** The graph's parameterized layers (Conv, Gemm, MatMul with a constant weight, BatchNormalization), in graph order. */
export function parameterizedLayers(graph: IrGraph): ParameterizedLayer[] {
  const out: ParameterizedLayer[] = [];
  graph.nodes.forEach((n, i) => {
    const l = layerOf(graph, n, i);
    if (l) out.push(l);
  });
  return out;
}

/** The layers the cascade walks, in graph order (the cascade takes them from the end). */
export function cascadeLayers(graph: IrGraph, options: Pick<RandomizationOptions, 'layers'> = {}): ParameterizedLayer[] {
  const all = parameterizedLayers(graph);
  if (all.length === 0) throw new InputError(`${graph.file}: no parameterized layer (Conv, Gemm, MatMul with a constant weight, BatchNormalization) to re-initialize`);
  if (!options.layers) return all;
  const wanted = new Set<number>();
  for (const name of options.layers) {
    const hit = all.filter((l) => l.node === name || l.module === name);
    if (hit.length === 0) {
      const known = all.map((l) => l.module ?? l.node).join(', ');
      throw new InputError(`${graph.file}: '${name}' is not a parameterized layer (node name or torch module path); the layers are: ${known}`);
    }
    for (const l of hit) wanted.add(l.index);
  }
  return all.filter((l) => wanted.has(l.index));
}

/** The re-initialized values of one layer's parameter (torch's reset_parameters, see the module comment). */
function freshValues(layer: ParameterizedLayer, p: LayerParameter, rng: Rng): Float32Array {
  const n = hostSize(p.dims);
  if (layer.opType === 'BatchNormalization') return new Float32Array(n).fill(p.role === 'scale' || p.role === 'variance' ? 1 : 0);
  const bound = layer.fanIn! > 0 ? 1 / Math.sqrt(layer.fanIn!) : 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = bound * (2 * rng.next() - 1);
  return out;
}

/** The name a re-initialized parameter gets in a copy (never the original's: no cache can mistake one for the other). */
export function randomizedName(initializer: string, seed: number): string {
  return `${initializer}::randomized(seed ${seed})`;
}

function checkSeed(seed: number): void {
  if (!(Number.isInteger(seed) && seed >= 0 && seed <= 0xffffffff)) throw new InputError(`randomization seed must be a whole number in [0, 2^32), got ${seed}`);
}

/**
 * The graph with the given layers re-initialized. Every other initializer, node and alias is
 * the original's object (nothing is copied); the re-initialized layers read new initializers
 * under new names, so a weight shared with a layer outside the set stays as it was there.
 */
export function randomizedGraph(graph: IrGraph, layers: readonly ParameterizedLayer[], seed = 0): IrGraph {
  checkSeed(seed);
  const initializers = new Map(graph.initializers);
  const nodes = [...graph.nodes];
  for (const layer of layers) {
    const node = graph.nodes[layer.index];
    if (!node || node.name !== layer.node) throw new InputError(`${graph.file}: layer '${layer.node}' is not node ${layer.index} of this graph`);
    const rng = Rng.derive(seed, `cascading-randomization:${layer.node}`);
    const inputs = [...node.inputs];
    for (const p of layer.params) {
      const original = graph.initializers.get(p.initializer)!;
      const name = randomizedName(p.initializer, seed);
      initializers.set(name, { dtype: original.dtype, dims: [...original.dims], data: freshValues(layer, p, rng) });
      inputs[p.input] = name;
    }
    nodes[layer.index] = { ...node, inputs };
  }
  const names = layers.map((l) => l.module ?? l.node);
  return { ...graph, file: `${graph.file} [re-initialized: ${names.join(', ')}; seed ${seed}]`, nodes, initializers, aliases: new Map(graph.aliases) };
}

/**
 * A copy of `model` whose last `k` cascade layers (from the output backwards) are
 * re-initialized. The copy shares the original's CPU initializers; it is a new Model with
 * its own GPU constants and programs (a Model owns its WeightStore), so the caller must
 * dispose it.
 */
export function randomizedCopy(model: Model, k: number, options: RandomizationOptions = {}): Model {
  const layers = cascadeLayers(model.graph, options);
  if (!(Number.isInteger(k) && k >= 1 && k <= layers.length)) throw new InputError(`${model.graph.file}: randomized copy k must be a whole number in [1, ${layers.length}] (its parameterized layers), got ${k}`);
  return new Model(model.ctx, randomizedGraph(model.graph, layers.slice(layers.length - k), options.seed ?? 0));
}

/**
 * The cascade: for k = 1…L, the copy with the last k layers re-initialized. One copy lives
 * at a time: each is disposed (its GPU memory returned) before the next is made, and when
 * the loop ends, breaks or throws.
 */
export async function* cascadingRandomization(model: Model, options: RandomizationOptions = {}): AsyncGenerator<RandomizationStep, void, undefined> {
  const layers = cascadeLayers(model.graph, options);
  const seed = options.seed ?? 0;
  checkSeed(seed);
  for (let k = 1; k <= layers.length; k++) {
    const randomized = layers.slice(layers.length - k).reverse();
    const copy = new Model(model.ctx, randomizedGraph(model.graph, randomized, seed));
    try {
      yield { step: k, layer: randomized[k - 1], randomized, model: copy };
    } finally {
      await copy.dispose();
    }
  }
}
