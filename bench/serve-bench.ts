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
 * weight per sequence, so batching helps until the batch is arithmetic-bound. Before starting the
 * server the bench times the f32 matmul kernel (the one a step runs) on B = 16 vectors × each of
 * the model's matrix shapes on the server's thread count, and turns it into the most tokens per
 * second a batch of 16 could compute: 16 ÷ (the products of one step).
 *
 *   node dist/bench/serve-bench.js [--model bench/models/stories110M-random.bin] [--tokenizer ../shared/models/tokenizer.bin]
 *     [--levels 1,4,16,64] [--tokens 32] [--slots 64] [--ctx 256] [--threads 1] [--write]   (--write: docs/PERFORMANCE.md)
 *     [--url http://127.0.0.1:PORT]   (a server started by hand, e.g. under node --cpu-prof: no child started)
 *
 * --threads is the server's `--threads` (threads of the products), 1 by default: the client runs
 * on the same 2-core machine, and the other engineers' processes too (see docs/PERFORMANCE.md).
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
/** Threads of the server's products (`serve --threads`): 1 by default, the client needs the other core. */
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
  const child = spawn(process.execPath, [path.join(ROOT, 'dist/src/cli/main.js'), 'serve', modelPath, '-z', tokPath, '--port', '0', '--slots', String(slots), '--ctx', String(ctx), '--queue', '1024', '--threads', String(threads)], { stdio: ['ignore', 'pipe', 'inherit'] });
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
  minRate: number;
  maxRate: number;
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
    minRate: Math.min(...rates),
    maxRate: Math.max(...rates),
  };
}

/**
 * The arithmetic bound of a batched step: the f32 matmul kernel (Backend.matmul, the one each
 * step runs) on `threads` threads, B = `batch` vectors × each of the model's matrix shapes
 * (random weights of the real sizes; the classifier's 98 MB does not stay in cache), timed best of
 * a few, then summed over the layers as a step runs them. Returns the kernel's GFLOP/s over a
 * whole step and the tokens per second that makes: B ÷ the step's product time.
 */
function matmulBound(c: ReturnType<typeof readLlama2cCheckpoint>['config'], batch: number): { gflops: number; tokPerS: number } {
  const kv = kvDim(c);
  // [rows, cols, times per token]: wq and wo, wk and wv, w1 and w3, w2 (per layer), the classifier
  const shapes: Array<[number, number, number]> = [[c.dim, c.dim, 2 * c.nLayers], [kv, c.dim, 2 * c.nLayers], [c.hiddenDim, c.dim, 2 * c.nLayers], [c.dim, c.hiddenDim, c.nLayers], [c.vocabSize, c.dim, 1]];
  const maxCols = Math.max(c.dim, c.hiddenDim);
  const weightBytes = shapes.reduce((a, [r, k]) => a + 4 * r * k, 0) + (1 << 20);
  const b = createBackend('wasm', { maxCols, weightBytes, threads });
  let stepMs = 0;
  let flops = 0;
  for (const [rows, cols, times] of shapes) {
    const data = new Float32Array(rows * cols);
    for (let i = 0; i < data.length; i++) data[i] = Math.sin(i) * 0.1;
    const w = b.upload({ type: 'f32', rows, cols, data });
    const xs = Array.from({ length: batch }, (_, v) => b.vector(cols, new Float32Array(cols).map((_, i) => Math.cos(i + v))));
    const outs = Array.from({ length: batch }, () => b.vector(rows));
    const reps = Math.max(2, Math.round(2e8 / (rows * cols * batch)));
    for (let i = 0; i < reps; i++) b.matmul(outs, xs, w); // warm-up: V8 optimizes the kernel
    let best = Infinity;
    for (let r = 0; r < 3; r++) {
      const t0 = performance.now();
      for (let i = 0; i < reps; i++) b.matmul(outs, xs, w);
      best = Math.min(best, (performance.now() - t0) / reps);
    }
    stepMs += best * times;
    flops += 2 * rows * cols * batch * times;
  }
  return { gflops: flops / (stepMs / 1000) / 1e9, tokPerS: batch / (stepMs / 1000) };
}

async function main(): Promise<void> {
  const model = readLlama2cCheckpoint(modelPath);
  const c = model.config;
  // weights multiplied per token: q, k, v, o and the three FFN matrices of every layer, and the classifier
  const perToken = c.nLayers * (2 * c.dim * c.dim + 2 * c.dim * kvDim(c) + 3 * c.dim * c.hiddenDim) + c.vocabSize * c.dim;
  const load = os.loadavg()[0]!;
  const cores = os.availableParallelism();
  const bound = matmulBound(c, 16);
  console.error(`f32 matmul kernel, B = 16, ${threads} thread(s): ${bound.gflops.toFixed(1)} GFLOP/s over a step's products → arithmetic bound ≈ ${bound.tokPerS.toFixed(0)} tok/s for ${(perToken / 1e6).toFixed(1)}M weights per token`);

  const srv = serverUrl ? { url: serverUrl, stop: () => {} } : await startServer();
  const results: LevelResult[] = [];
  try {
    await stream(srv.url, 8); // warm-up: the kernels compiled, a slot allocated
    for (const l of levels) {
      const r = await level(srv.url, l);
      results.push(r);
      console.error(`${l} streams: ${r.tokens} tokens in ${r.seconds.toFixed(1)} s, aggregate ${r.aggregate.toFixed(1)} tok/s, decode ${r.decode.toFixed(1)} tok/s, TTFT p50 ${r.ttft50.toFixed(0)} ms p99 ${r.ttft99.toFixed(0)} ms, ITL p50 ${r.itl50.toFixed(0)} ms p99 ${r.itl99.toFixed(0)} ms, per stream ${r.minRate.toFixed(1)}–${r.maxRate.toFixed(1)} tok/s (fairness ${r.fairness.toFixed(2)})`);
    }
  } finally {
    srv.stop();
  }
  const single = results.find((r) => r.concurrency === 1)?.decode ?? NaN;
  const at16 = results.find((r) => r.concurrency === 16);
  const rows = results.map((r) => `| ${r.concurrency} | ${r.tokens} | ${r.seconds.toFixed(1)} | ${r.aggregate.toFixed(1)} | ${r.decode.toFixed(1)} | ${(r.decode / single).toFixed(2)} | ${r.ttft50.toFixed(0)} / ${r.ttft99.toFixed(0)} | ${r.itl50.toFixed(0)} / ${r.itl99.toFixed(0)} | ${r.minRate.toFixed(1)} / ${r.maxRate.toFixed(1)} (${r.fairness.toFixed(2)}) |`);
  const table = [
    `Command: \`${['node dist/bench/serve-bench.js', ...process.argv.slice(2)].join(' ')}\` (\`npm run bench:serve\` builds first), ${new Date().toISOString().slice(0, 10)}`,
    `Model: ${path.basename(modelPath)} (${(parameterCount(c) / 1e6).toFixed(1)}M parameters, f32), server \`--slots ${slots} --ctx ${ctx} --threads ${threads}\`, ${tokens} tokens per stream, greedy; machine: ${os.cpus()[0]?.model ?? 'unknown'}, ${cores} cores, Node ${process.version}; load average before: ${load.toFixed(2)}`,
    `Arithmetic bound: the f32 matmul kernel (B = 16 vectors × the model's matrix shapes, ${threads} thread(s), measured before the server starts) computes ${bound.gflops.toFixed(1)} GFLOP/s; ÷ (2 × ${(perToken / 1e6).toFixed(1)}M weights per token) ≈ **${bound.tokPerS.toFixed(0)} tok/s**, the most a batch of 16 can reach here${at16 ? ` (16 streams: decode ${at16.decode.toFixed(1)} tok/s = ${(at16.decode / bound.tokPerS).toFixed(2)} of it)` : ''}; load average after: ${os.loadavg()[0]!.toFixed(2)}`,
    '',
    '| streams | tokens | seconds | aggregate tok/s | decode tok/s | × 1 stream | TTFT p50 / p99 ms | ITL p50 / p99 ms | per-stream tok/s min / max (fairness) |',
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
