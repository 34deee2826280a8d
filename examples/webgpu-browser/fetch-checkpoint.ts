import { type ModelConfig, type WeightStore, openSafetensorsBytes, parseModelConfig } from '@ropeswitch/core';

/** A checkpoint fetched over HTTP: what `loadCheckpoint(dir)` gives in Node, without a tokenizer. */
export interface FetchedCheckpoint {
  readonly config: ModelConfig;
  readonly weights: WeightStore;
}

async function fetchOk(url: URL): Promise<Response> {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`GET ${url.href}: HTTP ${response.status} ${response.statusText}`);
  return response;
}

/** Fetches `config.json` and `model.safetensors` (one file, not sharded) from the folder at `base`. */
export async function fetchCheckpoint(base: URL): Promise<FetchedCheckpoint> {
  const [configResponse, weightsResponse] = await Promise.all([fetchOk(new URL('config.json', base)), fetchOk(new URL('model.safetensors', base))]);
  const config = parseModelConfig(await configResponse.json());
  return { config, weights: openSafetensorsBytes(await weightsResponse.arrayBuffer(), weightsResponse.url) };
}
