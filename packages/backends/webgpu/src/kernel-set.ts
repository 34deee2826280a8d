/// <reference types="@webgpu/types" />

/**
 * Which matmul the backend runs: `register-blocked` (4×4 blocks in registers, no workgroup memory,
 * for software adapters such as llvmpipe or SwiftShader where barriers are costly) or `tiled`
 * (32×32 tiles in workgroup memory, for real GPUs). `auto` picks by adapter.
 */
export type KernelSetName = 'tiled' | 'register-blocked';

/** What is known of the adapter behind a device. */
export interface AdapterFacts {
  readonly vendor: string;
  readonly architecture: string;
  readonly device: string;
  readonly description: string;
  /** True for CPU implementations (llvmpipe, SwiftShader, WARP) and fallback adapters. */
  readonly software: boolean;
}

const SOFTWARE_NAMES = /llvmpipe|softpipe|swiftshader|lavapipe|warp|software|cpu/i;

/** Facts of an adapter (or of a device's `adapterInfo`), software detected by name and fallback flag. */
export function adapterFacts(info: GPUAdapterInfo | undefined, isFallback = false): AdapterFacts {
  const vendor = info?.vendor ?? '';
  const architecture = info?.architecture ?? '';
  const device = info?.device ?? '';
  const description = info?.description ?? '';
  const fallback = isFallback || (info as { isFallbackAdapter?: boolean } | undefined)?.isFallbackAdapter === true;
  const software = fallback || SOFTWARE_NAMES.test(`${vendor} ${architecture} ${device} ${description}`);
  return { vendor, architecture, device, description, software };
}

/** One line naming an adapter, e.g. `llvmpipe-llvm-15-0-6-256-bits- (OpenGL version OpenGL ES 3.2 Mesa 22.3.6) [software]`. */
export function describeAdapter(facts: AdapterFacts): string {
  const names = [facts.vendor, facts.device || facts.architecture].filter((s) => s !== '');
  let name = names.join(' ');
  if (facts.description !== '') name = name === '' ? facts.description : `${name} (${facts.description})`;
  if (name === '') name = 'unknown adapter';
  return facts.software ? `${name} [software]` : name;
}

/** The kernel set `auto` picks: register-blocked on software adapters, tiled elsewhere. */
export function chooseKernelSet(requested: KernelSetName | 'auto', facts: AdapterFacts): KernelSetName {
  if (requested !== 'auto') return requested;
  return facts.software ? 'register-blocked' : 'tiled';
}
