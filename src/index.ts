/**
 * llamats — the library. Re-exports only; each part is documented where it lives.
 */
export * from './errors.js';
export type { ModelConfig } from './model/config.js';
export { kvDim, parameterCount } from './model/config.js';
export type { Matrix, F32Matrix, Q8Matrix } from './model/tensor.js';
export { quantizeQ8 } from './model/tensor.js';
export type { Model, ModelWeights, LayerWeights } from './model/weights.js';
export { loadModel } from './model/load.js';
export { randomModel, type ModelShape } from './model/random.js';
export { Session, kvCacheBytes, type SessionOptions } from './model/forward.js';
export { openBackend, createBackend, type Backend, type BackendName, type BackendChoice, type CacheType } from './backend/backend.js';
export { readLlama2cCheckpoint, parseLlama2cCheckpoint, writeLlama2cCheckpoint, defaultGroupSize, type WriteLlama2cOptions } from './formats/llama2c.js';
export { Tokenizer } from './tokenizer/tokenizer.js';
export { Llama2cTokenizer, TextStream } from './tokenizer/llama2c.js';
export { SentencePieceTokenizer } from './tokenizer/sentencepiece.js';
export { HfTokenizer, sentencePieceToTokenizerJson, translateRegex, GPT2_PATTERN, LLAMA3_PATTERN, type HfTokenizerConfig } from './tokenizer/hf.js';
export { tokenizerFromGgufMetadata, GgufSpmTokenizer } from './tokenizer/gguf.js';
export { Sampler, XorShiftRng, argmax, type SamplerOptions } from './generate/sampler.js';
export { generate, generateText, type GenerateOptions, type GenerationChunk, type GenerationResult } from './generate/generate.js';
export { chat, renderLlama2Turn, type ChatIO, type ChatOptions } from './generate/chat.js';
export { Llama, logSoftmaxAt, metaSampleTopP, type LlamaBuildOptions, type GenerateOptions as LlamaGenerateOptions, type CompletionOptions, type TextCompletion, type ChatCompletion } from './llama.js';
export { encodeDialog, isUnsafeDialog, pyStrip, UNSAFE_ERROR, type Dialog, type Message, type Role } from './generate/dialog.js';
export type { DialogFormat, EncodeDialogOptions } from './generate/dialog.js';
export { renderChatTemplate, applyChatTemplate, encodeRendered, chatTemplateFor, specialId, ChatTemplateError, LLAMA2_CHAT_TEMPLATE, LLAMA3_CHAT_TEMPLATE, type ChatMessage, type RenderOptions } from './generate/template.js';
export { readMetaCheckpoint, readMetaParams, metaHiddenDim, type MetaParams } from './formats/meta.js';
export { loadHfModel, readHfConfig, isHfModelDir, type HfConfig } from './formats/hf.js';
export { readGgufHeader, loadGgufModel, writeGguf, writeGgufModel, modelToGgufTensors, llamaGgufMetadata, ggufTypeForRow, ggmlTypeId, GGML_TYPE, quantizeRow, dequantizeRow, type GgufHeader, type GgufTensorInfo, type GgufTensor, type GgufValue, type GgufArray, type GgufLoadOptions, type WriteGgufModelOptions } from './formats/gguf.js';
export { diagnose, findLibrary, maxCudaForDriver, type DoctorReport, type DoctorEnv, type GpuInfo, type LibraryInfo } from './doctor.js';
export { Engine, startServer, type EngineOptions, type ServerOptions, type RunningServer } from './engine/index.js';
