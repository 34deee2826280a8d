import { POOL_WORKER_BODY } from './pool-worker-source.js';

/** A pool worker, whatever starts it (Node's `worker_threads`, a browser's Web Workers). */
export interface PoolWorker {
  post(message: unknown): void;
  /** Messages the worker posts. */
  onMessage(listener: (data: unknown) => void): void;
  /** The worker stopped or threw outside a kernel: it serves no more jobs. */
  onDeath(listener: (reason: string) => void): void;
  /** Whether the worker keeps a Node process alive (browsers: no effect). */
  keepAlive(on: boolean): void;
  terminate(): Promise<void>;
}

/** What this runtime offers for compute threads. */
export interface ThreadSupport {
  /** Cores the runtime reports (`os.availableParallelism()`, `navigator.hardwareConcurrency`); 1 when unknown. */
  readonly cores: number;
  /** Why no worker can share memory here (undefined when one can). */
  readonly unavailable: string | undefined;
  /** Starts a pool worker. */
  spawn(): PoolWorker;
}

interface NodeWorker {
  postMessage(value: unknown): void;
  on(event: 'message' | 'error' | 'exit', listener: (value: unknown) => void): void;
  ref(): void;
  unref(): void;
  terminate(): Promise<number>;
}

interface NodeBuiltins {
  worker: { Worker: new (source: string, options: { eval: true }) => NodeWorker };
  os: { availableParallelism?(): number; cpus(): unknown[] };
}

interface WebWorker {
  postMessage(value: unknown): void;
  addEventListener(event: 'message' | 'error' | 'messageerror', listener: (event: { data?: unknown; message?: string }) => void): void;
  terminate(): void;
}

interface Host {
  process?: { versions?: { node?: string }; getBuiltinModule?(id: string): unknown };
  Worker?: new (url: string) => WebWorker;
  Blob?: new (parts: string[], options: { type: string }) => object;
  URL?: { createObjectURL(blob: object): string; revokeObjectURL(url: string): void };
  SharedArrayBuffer?: unknown;
  crossOriginIsolated?: boolean;
  navigator?: { hardwareConcurrency?: number };
}

const host = globalThis as unknown as Host;

/** Node's modules, read synchronously where Node has `process.getBuiltinModule` (20.16+); never imported, so bundles for browsers carry no Node import. */
function nodeBuiltins(): NodeBuiltins | undefined {
  const get = host.process?.versions?.node ? host.process.getBuiltinModule : undefined;
  if (!get) return undefined;
  return { worker: get('node:worker_threads') as NodeBuiltins['worker'], os: get('node:os') as NodeBuiltins['os'] };
}

/** The platform prelude the worker body (see pool-worker-source.ts) runs after: Node's. */
const NODE_PRELUDE = `var port = require('node:worker_threads').parentPort;
function listen(f) { port.once('message', f); }
function post(m) { port.postMessage(m); }`;

/** …and a browser's. */
const WEB_PRELUDE = `function listen(f) { self.onmessage = function (e) { self.onmessage = null; f(e.data); }; }
function post(m) { self.postMessage(m); }`;

function nodeWorker(builtins: NodeBuiltins): PoolWorker {
  const w = new builtins.worker.Worker(`${NODE_PRELUDE}\n${POOL_WORKER_BODY}`, { eval: true });
  return {
    post: (m) => w.postMessage(m),
    onMessage: (f) => w.on('message', f),
    onDeath: (f) => {
      w.on('error', (e) => f(`it threw ${String(e)}`));
      w.on('exit', (code) => f(`it exited (code ${String(code)})`));
    },
    keepAlive: (on) => (on ? w.ref() : w.unref()),
    terminate: async () => {
      await w.terminate();
    },
  };
}

function webWorker(): PoolWorker {
  const blob = new host.Blob!([`${WEB_PRELUDE}\n${POOL_WORKER_BODY}`], { type: 'text/javascript' });
  const url = host.URL!.createObjectURL(blob);
  const w = new host.Worker!(url);
  host.URL!.revokeObjectURL(url);
  return {
    post: (m) => w.postMessage(m),
    onMessage: (f) => w.addEventListener('message', (e) => f(e.data)),
    onDeath: (f) => w.addEventListener('error', (e) => f(`it threw ${e.message ?? 'an error'}`)),
    keepAlive: () => undefined,
    terminate: async () => w.terminate(),
  };
}

/** What the current runtime offers (see {@link ThreadSupport}). */
export function threadSupport(): ThreadSupport {
  const node = nodeBuiltins();
  if (node) {
    const cores = node.os.availableParallelism?.() ?? node.os.cpus().length;
    return { cores: Math.max(1, cores), unavailable: undefined, spawn: () => nodeWorker(node) };
  }
  const cores = Math.max(1, host.navigator?.hardwareConcurrency ?? 1);
  const unavailable = host.process?.versions?.node
    ? 'this Node has no process.getBuiltinModule (Node 20.16+ has it)'
    : typeof host.SharedArrayBuffer !== 'function' || host.crossOriginIsolated === false
      ? 'SharedArrayBuffer is unavailable: the page is not cross-origin isolated (COOP/COEP headers)'
      : typeof host.Worker !== 'function' || typeof host.Blob !== 'function' || !host.URL
        ? 'this runtime has no Web Workers'
        : undefined;
  return { cores, unavailable, spawn: webWorker };
}
