/** Real model shapes for random-weight benchmark checkpoints (values do not change speed). */
import type { ModelShape } from '../src/index.js';

export const SHAPES: Record<string, ModelShape> = {
  // karpathy/tinyllamas stories15M.bin and stories110M.bin (llama2.c README)
  stories15M: { dim: 288, hiddenDim: 768, nLayers: 6, nHeads: 6, nKvHeads: 6, vocabSize: 32000, seqLen: 256, sharedClassifier: true },
  stories110M: { dim: 768, hiddenDim: 2048, nLayers: 12, nHeads: 12, nKvHeads: 12, vocabSize: 32000, seqLen: 1024, sharedClassifier: true },
  // TinyLlama/TinyLlama-1.1B-Chat-v1.0 config.json: grouped-query attention, separate classifier
  'TinyLlama-1.1B': { dim: 2048, hiddenDim: 5632, nLayers: 22, nHeads: 32, nKvHeads: 4, vocabSize: 32000, seqLen: 2048, sharedClassifier: false },
  // meta-llama/Llama-2-7b params.json
  'Llama-2-7B': { dim: 4096, hiddenDim: 11008, nLayers: 32, nHeads: 32, nKvHeads: 32, vocabSize: 32000, seqLen: 4096, sharedClassifier: false },
};
