/**
 * A kernel is WGSL plus its interface: a uniform parameter struct (shapes, strides,
 * scalars; so one pipeline serves every shape) and an ordered list of storage bindings.
 * The preamble that declares them is generated here so every shader declares them the
 * same way and the bind group layout can be explicit.
 */
export type ParamType = 'u32' | 'i32' | 'f32';

/**
 * One member of a parameter struct: its name and WGSL type, and optionally a fallback value,
 * which makes the field optional in `ParamLayout.pack`.
 */
export type ParamField = readonly [name: string, type: ParamType] | readonly [name: string, type: ParamType, fallback: number];

/** The names of a layout's fields (`F` is its field list). */
export type ParamName<F extends readonly ParamField[]> = F[number][0];
type RequiredName<P> = P extends readonly [infer N extends string, ParamType] ? N : never;
type OptionalName<P> = P extends readonly [infer N extends string, ParamType, number] ? N : never;

/** The values `pack` takes: every field of the layout by name, those with a fallback optional. */
export type ParamValues<F extends readonly ParamField[]> =
  & { readonly [N in RequiredName<F[number]>]: number }
  & { readonly [N in OptionalName<F[number]>]?: number };

/**
 * The uniform struct of a kernel. Typed by its field list (inferred from the constructor's
 * argument), so `pack` takes exactly the declared names: a missing, misspelled or extra
 * field is a type error, also when it comes in through a spread.
 */
export class ParamLayout<const F extends readonly ParamField[] = readonly ParamField[]> {
  readonly fields: F;
  readonly byteSize: number;
  private readonly index: Map<string, number>;

  constructor(fields: F) {
    this.fields = fields;
    this.index = new Map(fields.map(([n], i) => [n, i]));
    this.byteSize = Math.max(16, Math.ceil((fields.length * 4) / 16) * 16);
  }

  wgsl(): string {
    return `struct Params {\n${this.fields.map(([n, t]) => `  ${n}: ${t},`).join('\n')}\n}\n`;
  }

  /**
   * Packs named values into the struct's bytes. Every field must be given unless the layout
   * declares a fallback for it; names the layout lacks are rejected by the type.
   */
  pack<const V extends ParamValues<F>>(values: V & { readonly [N in Exclude<keyof V, ParamName<F>>]: never }): Uint32Array {
    const words = new Uint32Array(this.byteSize / 4);
    const view = new DataView(words.buffer);
    const given = values as Readonly<Record<string, number | undefined>>;
    for (const [name, type, fallback] of this.fields) {
      const v = given[name] ?? fallback;
      if (v === undefined || Number.isNaN(v)) throw new Error(`kernel parameter '${name}' missing`);
      const off = this.index.get(name)! * 4;
      if (type === 'f32') view.setFloat32(off, v, true);
      else if (type === 'i32') view.setInt32(off, v, true);
      else {
        if (v < 0 || v > 0xffffffff || !Number.isInteger(v)) throw new Error(`kernel parameter '${name}' = ${v} is not a u32`);
        view.setUint32(off, v, true);
      }
    }
    return words;
  }
}

export interface StorageBinding {
  name: string;
  access: 'read' | 'read_write';
  /** WGSL element type of the runtime array, e.g. 'f32' or 'vec4<f32>'. */
  element: string;
}

export interface KernelDef {
  /** Unique key of the generated WGSL: kind plus every compile-time option. */
  key: string;
  params: ParamLayout | null;
  storage: readonly StorageBinding[];
  /** WGSL after the generated declarations; must define `@compute fn main`. */
  body: string;
  /** Directives such as `enable subgroups;`, which WGSL wants before any declaration. */
  directives?: string;
}

/** Binding 0 is the uniform `params` (when there is one); storage buffers follow from 1. */
export function kernelWgsl(def: KernelDef): string {
  const parts: string[] = [];
  if (def.directives) parts.push(`${def.directives}\n`);
  if (def.params) {
    parts.push(def.params.wgsl());
    parts.push('@group(0) @binding(0) var<uniform> params: Params;\n');
  }
  def.storage.forEach((s, i) => {
    parts.push(`@group(0) @binding(${i + 1}) var<storage, ${s.access}> ${s.name}: array<${s.element}>;\n`);
  });
  parts.push(def.body);
  return parts.join('');
}

/** Largest workgroup count per dimension every WebGPU device accepts. */
export const MAX_WORKGROUPS_PER_DIM = 65535;

/**
 * Spreads `groups` workgroups over x and y so no dimension exceeds the limit. Shaders
 * recover the linear index as `wid.x + wid.y * nwg.x` (see LINEAR_GROUP_WGSL).
 */
export function grid1d(groups: number): [number, number, number] {
  if (groups <= MAX_WORKGROUPS_PER_DIM) return [Math.max(1, groups), 1, 1];
  const y = Math.ceil(groups / MAX_WORKGROUPS_PER_DIM);
  return [Math.ceil(groups / y), y, 1];
}

/** WGSL helper used with grid1d: the linear workgroup index. */
export const LINEAR_GROUP_WGSL = 'fn linear_group(wid: vec3<u32>, nwg: vec3<u32>) -> u32 { return wid.x + wid.y * nwg.x; }\n';

/**
 * The entry point of a kernel with one invocation per element over a grid1d grid: the body
 * sees the element index `i`; invocations past `count` (a WGSL expression) return at once.
 */
export function elementwiseMain(workgroupSize: number, count: string, body: string): string {
  return `${LINEAR_GROUP_WGSL}
@compute @workgroup_size(${workgroupSize})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let i = linear_group(wid, nwg) * ${workgroupSize}u + li;
  if (i >= ${count}) { return; }
${body}
}
`;
}
