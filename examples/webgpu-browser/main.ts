/// <reference types="@webgpu/types" />
// The WebGPU browser example: a tiny Phi-3 LongRoPE model trained on a copy task, generated on
// `navigator.gpu` through a cache policy across the regime threshold, checked against the
// pure-TypeScript reference backend in the same page. Query: `?policy=shadow-prefill&n=50&seed=7&kernels=auto`.
import { ReferenceBackend } from '@ropeswitch/backend-reference';
import { WebGpuBackend, adapterFacts, describeAdapter, raisedLimits } from '@ropeswitch/backend-webgpu';
import { type Backend, type PolicyEvent, SeededRandom, createRopeSchedule, generate, wrapBackend } from '@ropeswitch/core';
import { policyByName } from '@ropeswitch/policies';
import { fetchCheckpoint } from './fetch-checkpoint.js';
import { type AdapterSummary, type PageResult, renderResult } from './page-result.js';

/** Token ids of the copy-task model (`packages/cli/assets/copy-longrope/tokens.json`). */
const BOS = 0;
const SEP = 1;
const EOS = 2;
const FIRST_CONTENT = 4;
const CONTENT_COUNT = 48;

interface PageGlobals {
  readonly navigator: { readonly gpu?: GPU };
  readonly location: { readonly href: string; readonly search: string };
}
const { navigator, location } = globalThis as unknown as PageGlobals;

interface Generated {
  readonly tokens: number[];
  readonly logits: Float32Array[];
  readonly events: PolicyEvent[];
  readonly ms: number;
}

async function run(backend: Backend, policy: string, prompt: readonly number[], maxNewTokens: number): Promise<Generated> {
  const start = performance.now();
  const { tokens, logits, events } = await generate(wrapBackend(backend, policyByName(policy)), prompt, { maxNewTokens });
  return { tokens, logits, events, ms: performance.now() - start };
}

function maxAbsDiff(a: readonly Float32Array[], b: readonly Float32Array[]): number {
  let max = a.length === b.length ? 0 : Infinity;
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (x.length !== y.length) return Infinity;
    for (let j = 0; j < x.length; j++) max = Math.max(max, Math.abs(x[j]! - y[j]!));
  }
  return max;
}

async function main(): Promise<PageResult> {
  const params = new URLSearchParams(location.search);
  const policy = params.get('policy') ?? 'shadow-prefill';
  const n = Number(params.get('n') ?? 50);
  const seed = Number(params.get('seed') ?? 7);
  const kernels = params.get('kernels') ?? 'auto';
  if (kernels !== 'auto' && kernels !== 'tiled' && kernels !== 'register-blocked') throw new Error(`kernels=${kernels}: expected auto, tiled or register-blocked`);

  const adapter = await navigator.gpu?.requestAdapter();
  if (!adapter) {
    return { ok: false, noAdapter: true, error: navigator.gpu ? 'navigator.gpu.requestAdapter() returned null' : 'navigator.gpu is undefined (no WebGPU, or not a secure context)' };
  }
  const summary: AdapterSummary = { ...adapterFacts(adapter.info), isFallbackAdapter: Boolean(adapter.info.isFallbackAdapter) };
  // The backend's kernels want the adapter's larger limits (storage bindings, workgroup size).
  const device = await adapter.requestDevice({ requiredLimits: raisedLimits(adapter) });
  const gpuErrors: string[] = [];
  device.addEventListener('uncapturederror', (event) => gpuErrors.push((event as GPUUncapturedErrorEvent).error.message));

  const { config, weights } = await fetchCheckpoint(new URL('models/copy-longrope/', location.href));
  const random = new SeededRandom(seed);
  const content = Array.from({ length: n }, () => FIRST_CONTENT + random.int(CONTENT_COUNT));
  const prompt = [BOS, ...content, SEP];
  const expected = [...content, EOS];
  const threshold = createRopeSchedule(config.rope).threshold ?? Infinity;
  // Step k is predicted by a forward over prompt + k tokens: the first such forward longer than L.
  const firstLong = Math.max(0, threshold + 1 - prompt.length);
  const crossingStep = firstLong < expected.length ? firstLong : null;

  const webgpu = await WebGpuBackend.create(config, weights, {
    device,
    kernels,
    adapterDescription: describeAdapter(summary),
    software: summary.software,
  });
  let gpu: Generated;
  try {
    gpu = await run(webgpu, policy, prompt, expected.length);
  } finally {
    await webgpu.dispose();
  }
  const reference = await run(new ReferenceBackend(config, weights), policy, prompt, expected.length);
  await weights.close();
  device.destroy();
  if (gpuErrors.length > 0) return { ok: false, adapter: summary, error: `WebGPU errors: ${gpuErrors.join('; ')}` };

  return {
    ok: true,
    policy,
    n,
    prompt,
    threshold,
    crossingStep,
    tokens: gpu.tokens,
    expected,
    copyCorrect: gpu.tokens.filter((t, i) => t === expected[i]).length,
    events: gpu.events,
    adapter: summary,
    kernels: webgpu.kernelSet,
    reference: {
      tokens: reference.tokens,
      agree: reference.tokens.length === gpu.tokens.length && reference.tokens.every((t, i) => t === gpu.tokens[i]),
      maxLogitDiff: maxAbsDiff(gpu.logits, reference.logits),
    },
    ms: { webgpu: gpu.ms, reference: reference.ms },
  };
}

main()
  .catch((error: unknown): PageResult => ({ ok: false, error: error instanceof Error ? `${error.name}: ${error.message}` : String(error) }))
  .then(renderResult);
