import type { PolicyEvent } from '@ropeswitch/core';

/** The adapter the page ran on, as `GPUAdapter.info` describes it. */
export interface AdapterSummary {
  readonly vendor: string;
  readonly architecture: string;
  readonly device: string;
  readonly description: string;
  /** A CPU implementation (SwiftShader in headless Chromium, llvmpipe), by flag or by name. */
  readonly software: boolean;
  /** What the browser itself says: a fallback adapter, typically software. */
  readonly isFallbackAdapter: boolean;
}

/**
 * What the page writes as JSON into `<pre id="result">` once it is done: the contract the browser
 * test (`test/webgpu-browser.test.ts`) reads.
 */
export type PageResult =
  | {
      readonly ok: true;
      readonly policy: string;
      /** Content tokens to copy; the prompt is `[BOS] x1..xn [SEP]`. */
      readonly n: number;
      readonly prompt: readonly number[];
      /** The regime threshold L: forwards longer than L run under the long factors. */
      readonly threshold: number;
      /** The first generated token predicted by a forward longer than L (undefined: no crossing). */
      readonly crossingStep: number | null;
      /** What WebGPU generated, and what a perfect copy is (`x1..xn EOS`). */
      readonly tokens: readonly number[];
      readonly expected: readonly number[];
      readonly copyCorrect: number;
      readonly events: readonly PolicyEvent[];
      readonly adapter: AdapterSummary;
      /** The matmul kernels the backend chose for this adapter (`register-blocked` on software ones). */
      readonly kernels: string;
      /** The same run on the pure-TypeScript reference backend, in the same page. */
      readonly reference: { readonly tokens: readonly number[]; readonly agree: boolean; readonly maxLogitDiff: number };
      readonly ms: { readonly webgpu: number; readonly reference: number };
    }
  | {
      readonly ok: false;
      readonly error: string;
      /** Set when the browser gave no WebGPU adapter at all: nothing ran. */
      readonly noAdapter?: true;
      readonly adapter?: AdapterSummary;
    };

/** The little of the DOM the page uses: the repository typechecks without the DOM lib. */
interface PageDom {
  readonly document: { getElementById(id: string): { textContent: string | null } | null };
}

const { document } = globalThis as unknown as PageDom;

function show(id: string, text: string): void {
  const element = document.getElementById(id);
  if (element) element.textContent = text;
}

const describeAdapter = (a: AdapterSummary): string =>
  `${a.vendor || '?'} ${a.architecture || ''} ${a.device || ''} ${a.description || ''}`.replace(/\s+/g, ' ').trim() +
  (a.software ? ` (software${a.isFallbackAdapter ? ' fallback' : ''} adapter)` : ' (hardware adapter)');

/** Fills the page's readable sections, then the JSON result (last, so a reader that sees it sees everything). */
export function renderResult(result: PageResult): void {
  if (result.adapter) show('adapter', describeAdapter(result.adapter));
  if (result.ok) {
    show(
      'run',
      `copy task, n = ${result.n}: prompt of ${result.prompt.length} tokens, L = ${result.threshold}, crossing at generated token ${result.crossingStep ?? '–'}, ` +
        `policy ${result.policy}, ${result.kernels} kernels`,
    );
    show(
      'tokens',
      result.tokens
        .map((t, i) => `${i === result.crossingStep ? '| ' : ''}${t}${t === result.expected[i] ? '' : `(≠${result.expected[i] ?? '–'})`}`)
        .join(' '),
    );
    show('events', result.events.map((e) => `${e.type} by ${e.policy} at S = ${e.atLength}`).join('\n') || 'none');
    show(
      'agreement',
      `${result.copyCorrect}/${result.expected.length} copied right; reference backend ${result.reference.agree ? 'agrees' : 'DISAGREES'} ` +
        `(max |Δlogit| ${result.reference.maxLogitDiff.toExponential(2)}); WebGPU ${result.ms.webgpu.toFixed(0)} ms, reference ${result.ms.reference.toFixed(0)} ms`,
    );
  } else {
    show('run', `failed: ${result.error}`);
  }
  show('result', JSON.stringify(result, null, 2));
}
