/**
 * `npm run bench:serve`: `llamats serve` under 1, 4, 16 and 64 concurrent streaming requests.
 *
 * Starts the real server in a child process (this process is the client), sends each level's
 * requests at once (completions, greedy, EOS/BOS blocked with logit_bias so every stream runs
 * exactly --tokens tokens), and reports per level: aggregate tok/s (all streams' tokens over the
 * level's wall time), decode tok/s (tokens after each stream's first, from the first token of any
 * stream to the last), time to first token p50/p99, inter-token latency p50/p99, and fairness (the
 * slowest stream's tok/s over the fastest's).
 *
 * The bound: each step of a batched forward pass reads every weight once and does 2 flops per
 * weight per sequence, so batching helps until the batch is arithmetic-bound. The bench measures
 * the matrix-vector kernel's rate on a cache-resident matrix (no memory traffic: the compute
 * ceiling of this kernel) and turns it into the largest aggregate tok/s the server's threads could
 * compute: threads × GFLOP/s ÷ (2 × weights per token).
 *
 *   node dist/bench/serve-bench.js [--model bench/models/stories110M-random.bin] [--tokenizer ../shared/models/tokenizer.bin]
 *     [--levels 1,4,16,64] [--tokens 32] [--slots 64] [--ctx 256] [--threads 1] [--write]   (--write: docs/PERFORMANCE.md)
 *     [--url http://127.0.0.1:PORT]   (a server started by hand, e.g. under node --cpu-prof: no child started)
 *
 * --threads sets the server's LLAMATS_THREADS: 1 by default, because the client runs on the same
 * 2-core machine (with 2 threads the server's products wait for the core the client is using).
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createBackend } from '../src/backend/backend.js';
import { kvDim, parameterCount } from '../src/model/config.js';
import { readLlama2cCheckpoint } from '../src/formats/llama2c.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : def;
}

const modelPath = path.resolve(arg('model', path.join(ROOT, 'bench/models/stories110M-random.bin')));
const tokPath = path.resolve(arg('tokenizer', path.join(ROOT, '../shared/models/tokenizer.bin')));
const levels = arg('levels', '1,4,16,64').split(',').map(Number);
const tokens = Number(arg('tokens', '32'));
const slots = Number(arg('slots', '64'));
const ctx = Number(arg('ctx', '256'));
/** Threads of the server's products (LLAMATS_THREADS): 1 by default, the client needs the other core. */
const threads = Number(arg('threads', '1'));
const write = process.argv.includes('--write');
/** A server already running (e.g. started under `node --cpu-prof`): bench it instead of starting one. */
const serverUrl = arg('url', '');

interface StreamTiming {
  sent: number;
  times: number[]; // arrival of each token's chunk (ms)
}

function pct(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

async function startServer(): Promise<{ url: string; stop: () => void }> {
  const child = spawn(process.execPath, [path.join(ROOT, 'dist/src/cli/main.js'), 'serve', modelPath, '-z', tokPath, '--port', '0', '--slots', String(slots), '--ctx', String(ctx), '--queue', '1024'], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, LLAMATS_THREADS: String(threads) } });
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) resolve(m[1]!);
    });
    child.once('exit', (code) => reject(new Error(`server exited with ${code}`)));
  });
  return { url, stop: () => child.kill('SIGTERM') };
}

async function stream(url: string, maxTokens: number): Promise<StreamTiming> {
  const sent = performance.now();
  const res = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ model: path.basename(modelPath).replace(/\.[^.]*$/, ''), prompt: 'Once upon a time', max_tokens: maxTokens, temperature: 0, stream: true, logit_bias: { 1: -100, 2: -100 } }),
  });
  if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
  const times: number[] = [];
  const reader = res.body!.getReader();
  const dec = new TextDecoder();
  let buf = '';
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    const events = buf.split('\n\n');
    buf = events.pop()!;
    const now = performance.now();
    for (const e of events) {
      if (!e.startsWith('data: ') || e === 'data: [DONE]') continue;
      const c = JSON.parse(e.slice(6)) as { choices: Array<{ text: string; finish_reason: string | null }> };
      if (c.choices[0] && c.choices[0].finish_reason === null) times.push(now);
    }
  }
  return { sent, times };
}

interface LevelResult {
  concurrency: number;
  tokens: number;
  seconds: number;
  aggregate: number;
  decode: number;
  ttft50: number;
  ttft99: number;
  itl50: number;
  itl99: number;
  fairness: number;
}

async function level(url: string, c: number): Promise<LevelResult> {
  const start = performance.now();
  const runs = await Promise.all(Array.from({ length: c }, () => stream(url, tokens)));
  const end = Math.max(...runs.map((r) => r.times.at(-1)!));
  const total = runs.reduce((a, r) => a + r.times.length, 0);
  const ttft = runs.map((r) => r.times[0]! - r.sent);
  const itl = runs.flatMap((r) => r.times.slice(1).map((t, i) => t - r.times[i]!));
  const rates = runs.map((r) => (r.times.length - 1) / ((r.times.at(-1)! - r.times[0]!) / 1000));
  // decode: the tokens after each stream's first, from the first stream's first token to the last token
  const from = Math.min(...runs.map((r) => r.times[0]!));
  const decode = (total - runs.length) / ((end - from) / 1000);
  return {
    concurrency: c,
    tokens: total,
    seconds: (end - start) / 1000,
    aggregate: total / ((end - start) / 1000),
    decode,
    ttft50: pct(ttft, 50),
    ttft99: pct(ttft, 99),
    itl50: pct(itl, 50),
    itl99: pct(itl, 99),
    fairness: Math.min(...rates) / Math.max(...rates),
  };
}

/** GFLOP/s of the f32 matrix-vector kernel on a cache-resident matrix, one thread. */
function kernelGflops(): number {
  const rows = 256;
  const cols = 256;
  const b = createBackend('wasm', { maxCols: cols, weightBytes: rows * cols * 4, threads: 1 });
  const data = new Float32Array(rows * cols).map((_, i) => Math.sin(i));
  const w = b.upload({ type: 'f32', rows, cols, data });
  const x = b.vector(cols, new Float32Array(cols).fill(0.5));
  const out = b.vector(rows);
  for (let i = 0; i < 200; i++) b.matvec(out, x, w);
  const iters = 4000;
  const t0 = performance.now();
  for (let i = 0; i < iters; i++) b.matvec(out, x, w);
  const s = (performance.now() - t0) / 1000;
  return (2 * rows * cols * iters) / s / 1e9;
}

async function main(): Promise<void> {
  const model = readLlama2cCheckpoint(modelPath);
  const c = model.config;
  // weights multiplied per token: q, k, v, o and the three FFN matrices of every layer, and the classifier
  const perToken = c.nLayers * (2 * c.dim * c.dim + 2 * c.dim * kvDim(c) + 3 * c.dim * c.hiddenDim) + c.vocabSize * c.dim;
  const load = os.loadavg()[0]!;
  const gflops = kernelGflops();
  const cores = os.availableParallelism();
  const computeBound = (threads * gflops * 1e9) / (2 * perToken);
  console.error(`kernel: ${gflops.toFixed(1)} GFLOP/s per thread (cache-resident f32 matvec); ${threads} server thread(s) → arithmetic bound ≈ ${computeBound.toFixed(0)} tok/s for ${(perToken / 1e6).toFixed(1)}M weights per token`);

  const srv = serverUrl ? { url: serverUrl, stop: () => {} } : await startServer();
  const results: LevelResult[] = [];
  try {
    await stream(srv.url, 8); // warm-up: the kernels compiled, a slot allocated
    for (const l of levels) {
      const r = await level(srv.url, l);
      results.push(r);
      console.error(`${l} streams: ${r.tokens} tokens in ${r.seconds.toFixed(1)} s, aggregate ${r.aggregate.toFixed(1)} tok/s, decode ${r.decode.toFixed(1)} tok/s, TTFT p50 ${r.ttft50.toFixed(0)} ms p99 ${r.ttft99.toFixed(0)} ms, ITL p50 ${r.itl50.toFixed(0)} ms p99 ${r.itl99.toFixed(0)} ms, fairness ${r.fairness.toFixed(2)}`);
    }
  } finally {
    srv.stop();
  }
  const single = results.find((r) => r.concurrency === 1)?.decode ?? NaN;
  const rows = results.map((r) => `| ${r.concurrency} | ${r.tokens} | ${r.seconds.toFixed(1)} | ${r.aggregate.toFixed(1)} | ${r.decode.toFixed(1)} | ${(r.decode / single).toFixed(2)} | ${r.ttft50.toFixed(0)} / ${r.ttft99.toFixed(0)} | ${r.itl50.toFixed(0)} / ${r.itl99.toFixed(0)} | ${r.fairness.toFixed(2)} |`);
  const table = [
    `Command: \`${['node dist/bench/serve-bench.js', ...process.argv.slice(2)].join(' ')}\` (\`npm run bench:serve\` builds first), ${new Date().toISOString().slice(0, 10)}`,
    `Model: ${path.basename(modelPath)} (${(parameterCount(c) / 1e6).toFixed(1)}M parameters, f32), server \`--slots ${slots} --ctx ${ctx}\` with LLAMATS_THREADS=${threads}, ${tokens} tokens per stream, greedy; machine: ${os.cpus()[0]?.model ?? 'unknown'}, ${cores} cores, Node ${process.version}; load average before: ${load.toFixed(2)}`,
    `Arithmetic bound: the f32 matvec kernel computes ${gflops.toFixed(1)} GFLOP/s per thread on a cache-resident matrix; ${threads} thread(s) × that ÷ (2 × ${(perToken / 1e6).toFixed(1)}M weights per token) ≈ **${computeBound.toFixed(0)} tok/s**, the most any batch can reach here`,
    '',
    '| streams | tokens | seconds | aggregate tok/s | decode tok/s | × 1 stream | TTFT p50 / p99 ms | ITL p50 / p99 ms | fairness (min/max tok/s) |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...rows,
  ].join('\n');
  console.log(table);
  if (write) {
    const doc = path.join(ROOT, 'docs/PERFORMANCE.md');
    const text = fs.readFileSync(doc, 'utf8');
    const begin = '<!-- serve-bench:begin -->';
    const end = '<!-- serve-bench:end -->';
    const i = text.indexOf(begin);
    const j = text.indexOf(end);
    if (i < 0 || j < i) throw new Error(`${doc} has no ${begin} … ${end} markers`);
    fs.writeFileSync(doc, text.slice(0, i + begin.length) + '\n' + table + '\n' + text.slice(j));
    console.error(`wrote ${doc}`);
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
