/** The engine: OpenAI-shaped chat and text completions over continuous batching. Re-exports only. */
export { Engine, type EngineOptions, type EngineStats } from './engine.js';
export { Scheduler, type SchedulerOptions, type SchedulerStats } from './scheduler.js';
export { Sequence, type SequenceEvent, type SequenceParams, type TokenLogprob } from './sequence.js';
export { validateChatRequest, validateCompletionRequest, type NormalizedChatRequest, type NormalizedCompletionRequest, type ValidationLimits } from './validate.js';
export type * from './types.js';
export { startServer, createServer, errorBody, type ServerOptions, type RunningServer } from '../server/server.js';
