/**
 * Point-wise activations, as the ops layer has always imported them. The table that defines
 * them lives with the shaders (src/shaders/pointwise.ts), which must not import from here.
 */
export {
  ACTIVATION_KINDS, ACTIVATION_PARAMS, type Activation, type ActivationKind, type ActivationOf, type ActivationUniforms,
  activateCpu, activationDerivativeCpu, activationFuses, activationGradientReads, activationGradientUnsupported,
  activationParams, activationWgsl, NO_ACTIVATION, POINTWISE, type PointwiseDerivative, type PointwiseRow, type WgslReal,
} from '../shaders/pointwise.js';
