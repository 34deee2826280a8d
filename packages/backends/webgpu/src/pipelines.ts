/// <reference types="@webgpu/types" />
import { ATTENTION_WORKGROUP_WGSL, attentionPerQueryWgsl } from './kernels/attention.js';
import { ADD_WGSL, EMBED_WGSL, SWIGLU_WGSL } from './kernels/elementwise.js';
import { KV_WRITE_WGSL } from './kernels/kv-write.js';
import { MATMUL_REGISTER_BLOCKED_WGSL } from './kernels/matmul-register-blocked.js';
import { MATMUL_TILED_WGSL } from './kernels/matmul-tiled.js';
import { RMS_NORM_WGSL } from './kernels/rms-norm.js';
import { ROTARY_WGSL } from './kernels/rotary.js';

/** The compute pipelines of fixed source, compiled once per backend (see {@link attentionPerQueryPipeline} for the others). */
export interface Pipelines {
  readonly embed: GPUComputePipeline;
  readonly add: GPUComputePipeline;
  readonly swiglu: GPUComputePipeline;
  readonly rmsNorm: GPUComputePipeline;
  readonly matmulRegisterBlocked: GPUComputePipeline;
  readonly matmulTiled: GPUComputePipeline;
  readonly rotary: GPUComputePipeline;
  readonly kvWrite: GPUComputePipeline;
  readonly attentionWorkgroup: GPUComputePipeline;
}

const SOURCES: Record<keyof Pipelines, string> = {
  embed: EMBED_WGSL,
  add: ADD_WGSL,
  swiglu: SWIGLU_WGSL,
  rmsNorm: RMS_NORM_WGSL,
  matmulRegisterBlocked: MATMUL_REGISTER_BLOCKED_WGSL,
  matmulTiled: MATMUL_TILED_WGSL,
  rotary: ROTARY_WGSL,
  kvWrite: KV_WRITE_WGSL,
  attentionWorkgroup: ATTENTION_WORKGROUP_WGSL,
};

/** Compiles every kernel (in parallel where the implementation can). */
export async function createPipelines(device: GPUDevice): Promise<Pipelines> {
  const names = Object.keys(SOURCES) as (keyof Pipelines)[];
  const compiled = await Promise.all(
    names.map((name) =>
      device.createComputePipelineAsync({
        label: name,
        layout: 'auto',
        compute: { module: device.createShaderModule({ label: name, code: SOURCES[name] }), entryPoint: 'main' },
      }),
    ),
  );
  return Object.fromEntries(names.map((n, i) => [n, compiled[i]!])) as unknown as Pipelines;
}

/** The per-query attention pipeline for one head dim (a multiple of 4), compiled on first use. */
export function attentionPerQueryPipeline(device: GPUDevice, headDim: number): GPUComputePipeline {
  const code = attentionPerQueryWgsl(headDim);
  return device.createComputePipeline({ label: `attention/${headDim}`, layout: 'auto', compute: { module: device.createShaderModule({ code }), entryPoint: 'main' } });
}
