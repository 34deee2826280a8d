/**
 * The typed, validated view of an HF `config.json` that every other module reads.
 * Produced by {@link parseModelConfig}; never built from untrusted JSON by hand.
 */

/** Weight layout: `phi3` has fused `qkv_proj` / `gate_up_proj`; `llama` has split projections. */
export type ModelFamily = 'phi3' | 'llama';

/** How rotary pairs are formed: HF "rotate-half" (GPT-NeoX, pairs `(i, i + r/2)`) or GPT-J interleaved (`(2i, 2i+1)`). */
export type RopePairing = 'rotate-half' | 'interleaved';

/** `rope_scaling.type` (or `rope_type`) values the library understands; `su` is parsed as `longrope`. */
export type RopeType = 'default' | 'linear' | 'dynamic' | 'yarn' | 'llama3' | 'longrope';

/** RoPE scaling, one variant per HF type, with HF's defaults already applied. */
export type RopeScaling =
  | { readonly type: 'default' }
  | { readonly type: 'linear'; readonly factor: number }
  | {
      readonly type: 'dynamic';
      readonly factor: number;
      /** Length past which frequencies change every step (HF 4.45: `max_position_embeddings`). */
      readonly originalMaxPositionEmbeddings: number;
    }
  | {
      readonly type: 'yarn';
      readonly factor: number;
      readonly originalMaxPositionEmbeddings: number;
      /** Explicit `attention_factor`; when absent the schedule derives it (`0.1·ln(factor) + 1`). */
      readonly attentionFactor: number | undefined;
      readonly betaFast: number;
      readonly betaSlow: number;
    }
  | {
      readonly type: 'llama3';
      readonly factor: number;
      readonly lowFreqFactor: number;
      readonly highFreqFactor: number;
      readonly originalMaxPositionEmbeddings: number;
    }
  | {
      readonly type: 'longrope';
      /** Per-pair rescale factors while the total length is at most `originalMaxPositionEmbeddings` (length r/2). */
      readonly shortFactor: readonly number[];
      /** Per-pair rescale factors past it (length r/2). */
      readonly longFactor: readonly number[];
      /** The threshold L: the switch is strict, `S > L` is long. */
      readonly originalMaxPositionEmbeddings: number;
      /** M, used with L for the default attention factor `sqrt(1 + ln(M/L) / ln L)`. */
      readonly maxPositionEmbeddings: number;
      /** Explicit `attention_factor`, when the config has one. */
      readonly attentionFactor: number | undefined;
      /** Explicit `factor` (replaces M/L in the attention-factor formula), when the config has one. */
      readonly factor: number | undefined;
      /** Regime-specific attention factors of some exports (`short_mscale` / `long_mscale`). */
      readonly shortMscale: number | undefined;
      readonly longMscale: number | undefined;
    };

/** Everything the rotary schedule needs. */
export interface RopeConfig {
  /** `rope_theta` (b). */
  readonly theta: number;
  /** `partial_rotary_factor` (1 when absent). */
  readonly partialRotaryFactor: number;
  /** r = floor(headDim · partialRotaryFactor): the rotated dims; `r … headDim−1` pass through. Always even. */
  readonly rotaryDim: number;
  readonly pairing: RopePairing;
  readonly scaling: RopeScaling;
}

/** A decoder-only model of the Phi-3 or Llama family, as HF `config.json` describes it. */
export interface ModelConfig {
  /** `model_type` as written (`phi3`, `llama`, `mistral`, `qwen2`). */
  readonly modelType: string;
  readonly family: ModelFamily;
  readonly vocabSize: number;
  readonly hiddenSize: number;
  readonly intermediateSize: number;
  readonly numLayers: number;
  readonly numHeads: number;
  readonly numKvHeads: number;
  /** `head_dim` if given, else hiddenSize / numHeads. */
  readonly headDim: number;
  readonly rmsNormEps: number;
  readonly maxPositionEmbeddings: number;
  /** `original_max_position_embeddings`, when the config has one. */
  readonly originalMaxPositionEmbeddings: number | undefined;
  readonly tieWordEmbeddings: boolean;
  /** Biases on q/k/v projections (qwen2 always, llama when `attention_bias`). */
  readonly attentionBias: boolean;
  /** Biases on the MLP projections (llama `mlp_bias`). */
  readonly mlpBias: boolean;
  /** Sliding-window attention width, when the config sets one (not implemented by the reference backend past it). */
  readonly slidingWindow: number | undefined;
  readonly bosTokenId: number | undefined;
  /** `eos_token_id`, normalised to a list (HF allows a number or a list). */
  readonly eosTokenIds: readonly number[];
  readonly rope: RopeConfig;
  /** `torch_dtype` as written, for information only: weights are read in the dtype their file declares. */
  readonly torchDtype: string | undefined;
}
