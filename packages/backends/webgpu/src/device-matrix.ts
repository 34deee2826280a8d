/// <reference types="@webgpu/types" />

/**
 * A weight matrix on the device, in HF Linear layout `[outDim][inDim]` as the checkpoint has it.
 * (Transposed `[inDim][outDim]` was measured 1.5× slower with the register-blocked kernel on
 * llvmpipe, so both kernel sets read this one layout.)
 */
export interface DeviceMatrix {
  readonly buffer: GPUBuffer;
  readonly inDim: number;
  readonly outDim: number;
}
