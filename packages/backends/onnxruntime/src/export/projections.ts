import { attr } from '../onnx/graph-nodes.js';
import { uint8Tensor } from '../onnx/tensor-proto.js';
import type { GraphBuilder } from './graph-builder.js';
import { type QuantBits, quantizeBlockwise } from './quantize.js';
import { transpose } from './transpose.js';

/** Weight precision of an export: float32 (the default), or `MatMulNBits` blocks of 4 or 8 bits. */
export type ExportQuantization = 'int4' | 'int8';

/** How the projections of an export are stored. */
export interface QuantizationSettings {
  readonly mode: ExportQuantization;
  /** Weights per block along the input dimension, one scale and zero point each (32, as onnxruntime-genai's int4 CPU builds). */
  readonly blockSize: number;
  /**
   * `MatMulNBits`' `accuracy_level`: 4 quantizes the activations to int8 per block and multiplies
   * in integers. Measured on 2 threads (a 3072 × 16384 projection): int4 2.0 ms at 1 token, 2.7 ms
   * at 4, against 3.8 / 9.9 ms at level 0 (float compute); int8 2.3 ms at level 4, 200 ms at level 0.
   */
  readonly accuracyLevel: number;
}

/** What an export did with each weight matrix. */
export interface QuantizationReport {
  readonly mode: 'float32' | ExportQuantization;
  readonly blockSize?: number;
  readonly accuracyLevel?: number;
  /** Matrices stored as `MatMulNBits` blocks. */
  readonly quantized: readonly string[];
  /** Matrices kept float32 although quantization was asked for, and why (e.g. an input dim not divisible by the block). */
  readonly fellBack: readonly { readonly tensor: string; readonly reason: string }[];
}

/**
 * Emits the graph's projections `x · Wᵀ (+ bias)` for HF-layout weights `W` `[out][in]`: float32
 * `MatMul` over `Wᵀ` `[in][out]` (activations are `[token][in]`, so no transpose at run time), or
 * `MatMulNBits` over W's blocks, which take W in its own layout. A matrix that cannot be quantized
 * (its input dim is not a multiple of the block) stays float32 and is listed in the report.
 */
export class Projections {
  private readonly quantized: string[] = [];
  private readonly fellBack: { tensor: string; reason: string }[] = [];

  constructor(
    private readonly b: GraphBuilder,
    private readonly settings: QuantizationSettings | undefined,
  ) {}

  /**
   * `x` `[tokens][inDim]` → `[tokens][outDim]`. `name` is the weight's name in the graph (its HF
   * name without `.weight`); `w` may be dropped once this returns (the sink has its bytes).
   */
  project(x: string, name: string, w: Float32Array, outDim: number, inDim: number, bias?: Float32Array): string {
    const s = this.settings;
    let y: string;
    if (s && inDim % s.blockSize === 0) {
      const bits: QuantBits = s.mode === 'int4' ? 4 : 8;
      const q = quantizeBlockwise(w, outDim, inDim, bits, s.blockSize);
      const blocks = inDim / s.blockSize;
      const data = this.b.tensor(uint8Tensor(`${name}.qweight`, q.data, [outDim, blocks, (s.blockSize * bits) / 8]));
      const scales = this.b.weight(`${name}.scales`, q.scales, [outDim * blocks]);
      const zeros = this.b.tensor(uint8Tensor(`${name}.qzeros`, q.zeroPoints, [q.zeroPoints.length]));
      y = this.b.op(
        'MatMulNBits',
        [x, data, scales, zeros],
        { K: attr.int(inDim), N: attr.int(outDim), bits: attr.int(bits), block_size: attr.int(s.blockSize), accuracy_level: attr.int(s.accuracyLevel) },
        undefined,
        'com.microsoft',
      );
      this.quantized.push(name);
    } else {
      if (s) this.fellBack.push({ tensor: name, reason: `input dim ${inDim} is not a multiple of the block size ${s.blockSize}` });
      y = this.b.op('MatMul', [x, this.b.weight(`${name}.weight_t`, transpose(w, outDim, inDim), [inDim, outDim])]);
    }
    return bias ? this.b.op('Add', [y, this.b.weight(`${name}.bias`, bias, [outDim])]) : y;
  }

  /** What was quantized and what was not. */
  report(): QuantizationReport {
    const s = this.settings;
    if (!s) return { mode: 'float32', quantized: [], fellBack: [] };
    return { mode: s.mode, blockSize: s.blockSize, accuracyLevel: s.accuracyLevel, quantized: [...this.quantized], fellBack: [...this.fellBack] };
  }
}
