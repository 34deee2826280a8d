/// <reference types="@webgpu/types" />
import { gridFor } from './kernels/grid.js';
import { BufferUsage } from './gpu-flags.js';

/** A buffer binding: a whole buffer, or a byte range of one. */
export type Binding = GPUBuffer | { readonly buffer: GPUBuffer; readonly offset: number; readonly size: number };

/** Uniform parameters of one dispatch: u32 values, or f32 values given as `{ f32: x }`. */
export type Param = number | { readonly f32: number };

interface DispatchStep {
  readonly kind: 'dispatch';
  readonly pipeline: GPUComputePipeline;
  readonly params: readonly Param[];
  readonly bindings: readonly Binding[];
  readonly groups: number;
}

interface CopyStep {
  readonly kind: 'copy';
  readonly src: GPUBuffer;
  readonly srcOffset: number;
  readonly dst: GPUBuffer;
  readonly dstOffset: number;
  readonly size: number;
}

/** Byte stride of one dispatch's parameters in the shared uniform buffer (the largest alignment devices require). */
const PARAM_SLOT = 256;

/**
 * Records dispatches and copies, then encodes them into one command buffer whose dispatch
 * parameters all live in one uniform buffer (one upload per call instead of one per dispatch).
 * Dispatches in a row share one compute pass; WebGPU orders their storage writes.
 */
export class CommandRecorder {
  private readonly steps: (DispatchStep | CopyStep)[] = [];
  private dispatches = 0;

  constructor(private readonly device: GPUDevice) {}

  /** Runs `pipeline` over `groups` workgroups (spread over a 2-D grid); bindings are 1, 2, … after the params at 0. */
  dispatch(pipeline: GPUComputePipeline, params: readonly Param[], bindings: readonly Binding[], groups: number): void {
    if (groups <= 0) return;
    if (params.length > PARAM_SLOT / 4) throw new RangeError(`${params.length} parameters exceed one ${PARAM_SLOT}-byte slot`);
    this.steps.push({ kind: 'dispatch', pipeline, params, bindings, groups });
    this.dispatches++;
  }

  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, size: number): void {
    if (size > 0) this.steps.push({ kind: 'copy', src, srcOffset, dst, dstOffset, size });
  }

  /** Encodes everything recorded; returns the command buffer and the uniform buffer to destroy after submission. */
  finish(): { commands: GPUCommandBuffer; uniforms: GPUBuffer | undefined } {
    const device = this.device;
    let uniforms: GPUBuffer | undefined;
    if (this.dispatches > 0) {
      uniforms = device.createBuffer({ size: this.dispatches * PARAM_SLOT, usage: BufferUsage.UNIFORM, mappedAtCreation: true });
      const range = uniforms.getMappedRange();
      const u32 = new Uint32Array(range);
      const f32 = new Float32Array(range);
      let slot = 0;
      for (const step of this.steps) {
        if (step.kind !== 'dispatch') continue;
        const base = slot * (PARAM_SLOT / 4);
        step.params.forEach((v, i) => {
          if (typeof v === 'number') u32[base + i] = v;
          else f32[base + i] = v.f32;
        });
        slot++;
      }
      uniforms.unmap();
    }
    const encoder = device.createCommandEncoder();
    let pass: GPUComputePassEncoder | undefined;
    let slot = 0;
    for (const step of this.steps) {
      if (step.kind === 'copy') {
        pass?.end();
        pass = undefined;
        encoder.copyBufferToBuffer(step.src, step.srcOffset, step.dst, step.dstOffset, step.size);
        continue;
      }
      pass ??= encoder.beginComputePass();
      const entries: GPUBindGroupEntry[] = [
        { binding: 0, resource: { buffer: uniforms!, offset: slot * PARAM_SLOT, size: PARAM_SLOT } },
      ];
      step.bindings.forEach((b, i) => {
        entries.push({ binding: i + 1, resource: 'buffer' in b ? { buffer: b.buffer, offset: b.offset, size: b.size } : { buffer: b } });
      });
      const group = device.createBindGroup({ layout: step.pipeline.getBindGroupLayout(0), entries });
      pass.setPipeline(step.pipeline);
      pass.setBindGroup(0, group);
      const [x, y] = gridFor(step.groups);
      pass.dispatchWorkgroups(x, y);
      slot++;
    }
    pass?.end();
    return { commands: encoder.finish(), uniforms };
  }
}
