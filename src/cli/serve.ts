/**
 * `llamats serve <model>`: the OpenAI-compatible HTTP server with continuous batching and the
 * chat page (src/server/, src/engine/). Runs until SIGINT / SIGTERM.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import { InvalidArgumentError, OutOfMemoryError, formatBytes } from '../errors.js';
import { Engine } from '../engine/engine.js';
import type { DialogFormat } from '../generate/dialog.js';
import { kvCacheBytes } from '../model/forward.js';
import { startServer } from '../server/server.js';
import { formatFlags, parseArgs, type FlagSpec } from './args.js';
import type { RunIO } from './run.js';
import { inspectModel } from '../inspect.js';
import { defaultTokenizerPath } from '../llama.js';
import { fitModel } from '../plan.js';
import { DEFAULT_MAX_CONTEXT } from '../engine/engine.js';
import { parseQuantize } from './plan.js';
import { parseFit, parseKvCache, parseThreads } from './run.js';

export const SERVE_FLAGS: readonly FlagSpec[] = [
  { short: '-z', long: '--tokenizer', key: 'tokenizer', kind: 'string', placeholder: 'path', help: 'tokenizer file', default: "the model directory's own (Hugging Face, GGUF); required for llama2.c files" },
  { long: '--host', key: 'host', kind: 'string', placeholder: 'addr', help: 'address to listen on; anything but loopback exposes the server to the network', default: '127.0.0.1' },
  { long: '--port', key: 'port', kind: 'int', placeholder: 'int', help: 'port; 0 picks a free one', default: '8080' },
  { long: '--api-key', key: 'apiKey', kind: 'string', placeholder: 'key', help: 'require Authorization: Bearer <key> on /v1/* (also LLAMATS_API_KEY)', default: 'none' },
  { long: '--name', key: 'name', kind: 'string', placeholder: 'id', help: 'model id that requests name', default: 'the model file name without extension' },
  { long: '--slots', key: 'slots', kind: 'int', placeholder: 'int', help: 'sequences decoded together (one KV cache each)', default: '16' },
  { long: '--queue', key: 'queue', kind: 'int', placeholder: 'int', help: 'sequences that may wait for a slot; beyond, 429 + Retry-After', default: '4 × slots' },
  { long: '--ctx', key: 'ctx', kind: 'int', placeholder: 'int', help: "positions per slot (prompt + answer)", default: "the model's context, at most 4096" },
  { long: '--prefill-chunk', key: 'prefillChunk', kind: 'int', placeholder: 'int', help: 'prompt tokens run per step while other sequences decode (4 × that when none does)', default: '32' },
  { long: '--kv-cache', key: 'kvCache', kind: 'string', placeholder: 'f32|f16', help: 'element type of the KV caches (f16 halves them)', default: 'f32' },
  { long: '--threads', key: 'threads', kind: 'int', placeholder: 'int', help: 'threads of the matrix products (wasm backend); leave a core to clients on the same machine', default: 'LLAMATS_THREADS, else the physical cores' },
  { long: '--max-body', key: 'maxBody', kind: 'int', placeholder: 'bytes', help: 'largest request body', default: '1048576' },
  { long: '--chat-format', key: 'chatFormat', kind: 'string', placeholder: 'llama2|llama3|template', help: 'how messages become the prompt', default: "template if the tokenizer has one, else llama3 for Llama 3 vocabularies, else llama2" },
  { long: '--chat-template', key: 'chatTemplate', kind: 'string', placeholder: 'file', help: 'a Jinja chat template file to use instead of the tokenizer\'s' },
  { long: '--fit', key: 'fit', kind: 'string', placeholder: 'auto|check', help: 'when weights + one KV cache per slot do not fit in memory: auto = quantize on load / fewer positions / fewer slots, check = stop with the choices', default: 'check' },
  { long: '--quantize', key: 'quantize', kind: 'string', placeholder: 'q8_0|q4_0', help: 'quantize the weights while loading' },
  { long: '--verbose', key: 'verbose', kind: 'bool', help: 'log each request on stderr; on errors, print the chain of causes' },
  { short: '-h', long: '--help', key: 'help', kind: 'bool', help: 'show this help' },
];

export const SERVE_USAGE = `Usage: llamats serve <model> [options]
Example: llamats serve stories260K.bin -z tok512.bin --port 8080
OpenAI-compatible server: POST /v1/chat/completions, POST /v1/completions (stream with SSE),
GET /v1/models, GET /health, and a chat page at GET /. Requests share the model through
continuous batching. See docs/SERVER.md for the supported request fields.
Options:
${formatFlags(SERVE_FLAGS)}`;

export async function serveCommand(argv: readonly string[], io: RunIO & { signal?: AbortSignal }): Promise<number> {
  const { positionals, flags } = parseArgs(argv, SERVE_FLAGS, 'serve');
  if (flags.help) {
    io.stdout(SERVE_USAGE + '\n');
    return 0;
  }
  if (positionals.length !== 1) throw new InvalidArgumentError(`expected one <model>; usage: llamats serve <model> [options] (see 'llamats serve --help')`);
  const port = (flags.port as number | undefined) ?? 8080;
  if (port < 0 || port > 65535) throw new InvalidArgumentError(`--port must be in [0, 65535]; got ${port}`, '--port');
  for (const k of ['slots', 'queue', 'ctx', 'prefillChunk', 'maxBody'] as const) {
    const v = flags[k] as number | undefined;
    if (v !== undefined && v < (k === 'queue' ? 0 : 1)) throw new InvalidArgumentError(`--${k === 'prefillChunk' ? 'prefill-chunk' : k === 'maxBody' ? 'max-body' : k} must be ≥ ${k === 'queue' ? 0 : 1}; got ${v}`);
  }
  const threads = parseThreads(flags.threads);
  const kvCache = parseKvCache(flags.kvCache);
  const chatFormat = flags.chatFormat as string | undefined;
  if (chatFormat !== undefined && !['llama2', 'llama3', 'template'].includes(chatFormat)) throw new InvalidArgumentError(`--chat-format must be llama2, llama3 or template; got '${chatFormat}'`, '--chat-format');
  let chatTemplate: string | undefined;
  if (flags.chatTemplate !== undefined) {
    try {
      chatTemplate = fs.readFileSync(flags.chatTemplate as string, 'utf8');
    } catch (e) {
      throw new InvalidArgumentError(`--chat-template ${flags.chatTemplate}: ${(e as Error).message}`, '--chat-template');
    }
  }
  const apiKey = (flags.apiKey as string | undefined) ?? process.env.LLAMATS_API_KEY;
  const opt = <T>(key: string, v: T | undefined) => (v !== undefined ? { [key]: v } : {});

  // plan the memory (weights + one KV cache per slot) from the headers before loading anything
  const modelPath = positionals[0]!;
  const tokenizerPath = (flags.tokenizer as string | undefined) ?? defaultTokenizerPath(modelPath);
  const report = inspectModel(modelPath, { tokenizerPath });
  const fit = fitModel(report, {
    ctx: (flags.ctx as number | undefined) ?? Math.min(report.config.seqLen || 2048, DEFAULT_MAX_CONTEXT),
    batch: (flags.slots as number | undefined) ?? 16,
    fit: parseFit(flags.fit),
    ...(flags.quantize !== undefined ? { quantize: parseQuantize(flags.quantize, '--quantize')! } : {}),
  });
  if (fit.note) io.stderr(`llamats: ${fit.note}\n`);
  flags.slots = fit.batch;
  flags.ctx = fit.ctx;
  const engine = Engine.load(modelPath, {
    tokenizer: tokenizerPath,
    ...(fit.quantize ? { quantize: fit.quantize } : {}),
    ...opt('name', flags.name as string | undefined),
    ...opt('slots', flags.slots as number | undefined),
    ...opt('maxQueue', flags.queue as number | undefined),
    ...opt('contextLength', flags.ctx as number | undefined),
    ...opt('prefillChunk', flags.prefillChunk as number | undefined),
    ...opt('chatFormat', chatFormat as DialogFormat | undefined),
    ...opt('chatTemplate', chatTemplate),
    ...opt('threads', threads),
    kvCache,
  });
  // every slot may hold a KV cache: refuse up front rather than fail under load
  const kv = engine.scheduler.slots * kvCacheBytes(engine.model.config, engine.contextLength, kvCache === 'f16' ? 2 : 4);
  if (kv > os.freemem()) {
    throw new OutOfMemoryError(`${engine.scheduler.slots} slots × ${engine.contextLength} positions need ${formatBytes(kv)} of KV cache but ${formatBytes(os.freemem())} is free; lower --slots or --ctx`, kv, os.freemem());
  }
  const server = await startServer(engine, {
    host: (flags.host as string | undefined) ?? '127.0.0.1',
    port,
    ...opt('apiKey', apiKey),
    ...opt('maxBodyBytes', flags.maxBody as number | undefined),
    ...(flags.verbose ? { log: (l: string) => io.stderr(l + '\n') } : {}),
  });
  // the signal handlers go in before the 'listening' line: a client may stop us the moment it reads it
  const stopped = new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    io.signal?.addEventListener('abort', stop, { once: true });
  });
  io.stdout(`llamats serve: listening on ${server.url} (model '${engine.name}', ${engine.scheduler.slots} slots × ${engine.contextLength} positions, chat format ${engine.chatFormat}${apiKey ? ', API key required' : ''})\n`);
  await stopped;
  await server.close();
  // nothing should be left running; if a worker or socket still is, do not hang on it
  setTimeout(() => process.exit(0), 2000).unref();
  return 0;
}
