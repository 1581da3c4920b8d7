import type { Model } from '../model.js';
import type { Tensor } from '../runtime/tensor.js';
import { explain, type ExplainOptions, type ExplainResult, type MethodMaps, type TargetSpec } from './explain.js';

/** Options fixed when a method object is made, as pytorch-grad-cam's constructors take them. */
export interface CamConstructorOptions {
  /** Target layers (default ['auto']). */
  layers?: readonly string[];
  score?: 'logit' | 'softmax';
  seed?: number;
  batchSize?: number;
}

export interface CamCallOptions {
  targets?: TargetSpec;
}

/** One method's maps plus what explain resolved. */
export interface CamResult extends MethodMaps {
  result: ExplainResult;
  /** Releases the maps and the shared tensors. */
  dispose(): void;
}

/**
 * A method bound to a model and its layers, shaped like pytorch-grad-cam's classes:
 * `const cam = new GradCAM(model, { layers: ['layer4'] }); const r = await cam.explain(x, { targets })`.
 */
export class CamMethodRunner {
  readonly model: Model;
  readonly method: string;
  readonly options: CamConstructorOptions;

  constructor(model: Model, method: string, options: CamConstructorOptions = {}) {
    this.model = model;
    this.method = method;
    this.options = options;
  }

  async explain(x: Tensor, call: CamCallOptions = {}): Promise<CamResult> {
    const options: ExplainOptions = { ...this.options, methods: [this.method], targets: call.targets };
    const result = await explain(this.model, x, options);
    const maps = result.methods[0];
    return { ...maps, result, dispose: () => result.dispose() };
  }
}

function methodClass(method: string) {
  return class extends CamMethodRunner {
    constructor(model: Model, options: CamConstructorOptions = {}) {
      super(model, method, options);
    }
  };
}

export const ActivationCAM = methodClass('activationcam');
export const CAM = methodClass('cam');
export const GradCAM = methodClass('gradcam');
export const GradCAMPlusPlus = methodClass('gradcam++');
export const XGradCAM = methodClass('xgradcam');
export const HiResCAM = methodClass('hirescam');
export const GradCAMElementWise = methodClass('gradcamelementwise');
export const LayerCAM = methodClass('layercam');
export const EigenCAM = methodClass('eigencam');
export const EigenGradCAM = methodClass('eigengradcam');
export const FEM = methodClass('fem');
export const RandomCAM = methodClass('randomcam');
