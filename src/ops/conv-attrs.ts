import type { Activation } from './activation.js';

/*
 * A leaf module: conv.ts, conv-sg8.ts (which conv.ts imports), grad-conv.ts and the graph
 * all need the attribute type, and declaring it in conv.ts made conv.ts ↔ conv-sg8.ts a cycle.
 */

/** 2-D convolution attributes with pads resolved (auto_pad applied): [top, left, bottom, right]. */
export interface Conv2dAttrs {
  kernel: [number, number];
  strides: [number, number];
  pads: [number, number, number, number];
  dilations: [number, number];
  groups: number;
  activation: Activation;
  /**
   * Allow Winograd F(4×4), which trades ~1e-5 relative error for a quarter of the
   * multiplications (default true). `gradients()` turns it off in the forward pass of
   * every gradient program (option exactRouting): that error can flip a max-pool or ReLU decision near a tie and route a
   * gradient elsewhere than the exact computation would.
   */
  winograd4?: boolean;
}
