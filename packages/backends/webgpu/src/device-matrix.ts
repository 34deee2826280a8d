/// <reference types="@webgpu/types" />

/** Rows `[first, first + rows)` of a {@link DeviceMatrix} in a buffer of their own, `[row][inDim]`. */
export interface MatrixBlock {
  readonly buffer: GPUBuffer;
  readonly first: number;
  readonly rows: number;
}

/**
 * A weight matrix on the device, in HF Linear layout `[outDim][inDim]` as the checkpoint has it,
 * as row blocks that each fit one storage binding: one block when the whole matrix fits (the usual
 * case), several for the matrices past `maxStorageBufferBindingSize` (Phi-3's 32064-row embedding
 * and LM head, its gate_up projection). Separate buffers rather than ranges of one: no block is
 * bound by `maxBufferSize` either (browsers default to 256 MiB) and no offset needs aligning.
 * (Transposed `[inDim][outDim]` was measured 1.5× slower with the register-blocked kernel on
 * llvmpipe, so both kernel sets read this one layout.)
 */
export interface DeviceMatrix {
  /** Every row, in order, no gaps. */
  readonly blocks: readonly MatrixBlock[];
  readonly inDim: number;
  readonly outDim: number;
}
