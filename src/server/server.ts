/**
 * The HTTP server of `llamats serve`: a thin node:http adapter over the Engine. JSON in, one
 * engine call, JSON or Server-Sent Events out; errors in OpenAI's error JSON with the status of
 * HTTP_STATUS (src/errors.ts).
 *
 *   GET  /                      the chat page (src/server/web/page.ts)
 *   GET  /health                { status: 'ok', … batch and queue counters }
 *   GET  /v1/models[/{id}]      the served model
 *   POST /v1/chat/completions   engine.chat.completions.create
 *   POST /v1/completions        engine.completions.create
 *
 * Streaming: `data: {chunk}\n\n` per chunk, then `data: [DONE]\n\n`; an error after the stream
 * started is sent as `data: {"error": …}` before the connection closes. A client that disconnects
 * cancels its request: its sequences leave the batch at once.
 *
 * Security: listens on 127.0.0.1 unless told otherwise; on a loopback address, requests whose
 * Host header is not a loopback name are refused (DNS rebinding); with an API key, /v1/* needs
 * `Authorization: Bearer <key>` (compared in constant time); POST bodies must be JSON
 * (Content-Type application/json: a page on another site cannot send one without a CORS
 * preflight, which this server does not grant) and at most `maxBodyBytes`; nothing in a request
 * names a file (the model is chosen when the server starts). The page is served with a strict
 * Content-Security-Policy: it loads nothing from anywhere.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { HTTP_STATUS, InvalidRequestError, LlamatsError, RateLimitError } from '../errors.js';
import type { Engine } from '../engine/engine.js';
import type { ChatCompletionCreateParams, CompletionCreateParams } from '../engine/types.js';
import { PAGE_CSP, PAGE_HTML } from './web/page.js';
import { jsonDepth, MAX_JSON_DEPTH } from '../io/json.js';

export interface ServerOptions {
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 8080; 0 picks a free port. */
  port?: number;
  /** When set, /v1/* requires `Authorization: Bearer <apiKey>`. */
  apiKey?: string;
  /** Largest request body. Default 1 MiB. */
  maxBodyBytes?: number;
  /** Log one line per request here (default: nothing). */
  log?: (line: string) => void;
}

export interface RunningServer {
  readonly server: http.Server;
  /** http://host:port */
  readonly url: string;
  readonly port: number;
  /** Stop accepting, cancel what runs, close connections. */
  close(): Promise<void>;
}

/** An error the HTTP layer itself answers (routing, auth, body). */
class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type: string,
    readonly code: string | null,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]', '::1']);

/** Start `llamats serve`'s HTTP server for an engine. */
export async function startServer(engine: Engine, opts: ServerOptions = {}): Promise<RunningServer> {
  const host = opts.host ?? '127.0.0.1';
  const server = createServer(engine, { ...opts, host });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 8080, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const shown = host.includes(':') ? `[${host}]` : host;
  return {
    server,
    port,
    url: `http://${shown}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        engine.close();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** The request handler as a node:http server (not listening yet). */
export function createServer(engine: Engine, opts: ServerOptions = {}): http.Server {
  const maxBody = opts.maxBodyBytes ?? 1 << 20;
  const keyHash = opts.apiKey !== undefined ? sha256(opts.apiKey) : undefined;
  const host = opts.host ?? '127.0.0.1';
  const loopbackOnly = host === '127.0.0.1' || host === 'localhost' || host === '::1' || host.startsWith('127.');
  const server = http.createServer((req, res) => {
    const started = performance.now();
    handle(req, res).catch((e) => sendError(res, e)).finally(() => {
      opts.log?.(`${req.method} ${req.url} ${res.statusCode} ${(performance.now() - started).toFixed(0)}ms`);
    });
  });
  server.keepAliveTimeout = 5000;
  server.headersTimeout = 30_000;
  server.requestTimeout = 60_000; // receiving a request; a streamed answer may take longer

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    if (loopbackOnly) {
      const h = (req.headers.host ?? '').replace(/:\d+$/, '').toLowerCase();
      if (!LOOPBACK_HOSTS.has(h) && !h.startsWith('127.')) throw new HttpError(403, `Host '${h}' is not allowed: this server listens on ${host} only (start it with --host to serve other names)`, 'invalid_request_error', 'forbidden_host');
    }
    const url = new URL(req.url ?? '/', 'http://localhost');
    const p = url.pathname;
    const route = (method: string) => {
      if (req.method === method || (method === 'GET' && req.method === 'HEAD')) return;
      throw new HttpError(405, `${req.method} is not allowed on ${p}; use ${method}`, 'invalid_request_error', 'method_not_allowed', { Allow: method });
    };
    if (p === '/' || p === '/index.html') {
      route('GET');
      return send(res, 200, PAGE_HTML, {
        'Content-Type': 'text/html; charset=utf-8',
        'Content-Security-Policy': PAGE_CSP,
        'X-Frame-Options': 'DENY',
        'Referrer-Policy': 'no-referrer',
        'Cache-Control': 'no-cache',
      });
    }
    if (p === '/health') {
      route('GET');
      return sendJson(res, 200, { status: 'ok', ...engine.stats() });
    }
    if (!p.startsWith('/v1/')) throw new HttpError(404, `no route ${p}; see GET /v1/models, POST /v1/chat/completions, POST /v1/completions`, 'invalid_request_error', 'not_found');
    authorize(req);
    if (p === '/v1/models') {
      route('GET');
      return sendJson(res, 200, engine.models.list());
    }
    if (p.startsWith('/v1/models/')) {
      route('GET');
      return sendJson(res, 200, engine.models.retrieve(decodeURIComponent(p.slice('/v1/models/'.length))));
    }
    if (p === '/v1/chat/completions' || p === '/v1/completions') {
      route('POST');
      const body = await readJson(req);
      const abort = new AbortController();
      res.on('close', () => {
        if (!res.writableFinished) abort.abort();
      });
      const result =
        p === '/v1/chat/completions'
          ? await engine.chat.completions.create(body as ChatCompletionCreateParams, { signal: abort.signal })
          : await engine.completions.create(body as CompletionCreateParams, { signal: abort.signal });
      if (isAsyncIterable(result)) return streamSse(res, result, abort.signal);
      return sendJson(res, 200, result);
    }
    throw new HttpError(404, `no route ${p}; see GET /v1/models, POST /v1/chat/completions, POST /v1/completions`, 'invalid_request_error', 'not_found');
  }

  function authorize(req: http.IncomingMessage): void {
    if (!keyHash) return;
    const m = /^Bearer (.+)$/.exec(req.headers.authorization ?? '');
    // compare hashes: equal lengths for timingSafeEqual, and no early exit on the first differing byte
    if (!m || !timingSafeEqual(sha256(m[1]!.trim()), keyHash)) {
      throw new HttpError(401, 'Incorrect API key provided: send Authorization: Bearer <key> with the key the server was started with (--api-key)', 'invalid_request_error', 'invalid_api_key');
    }
  }

  async function readJson(req: http.IncomingMessage): Promise<unknown> {
    const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    if (type !== 'application/json') {
      await drain(req, maxBody * 16);
      throw new HttpError(415, `send the body as JSON with Content-Type: application/json; got '${type || 'none'}'`, 'invalid_request_error', 'unsupported_media_type');
    }
    const declared = Number(req.headers['content-length'] ?? NaN);
    if (declared > maxBody) {
      await drain(req, maxBody * 16);
      throw tooLarge(maxBody);
    }
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > maxBody) {
        await drain(req, maxBody * 16);
        throw tooLarge(maxBody);
      }
      chunks.push(chunk);
    }
    return parseJsonBody(Buffer.concat(chunks).toString('utf8'));
  }

  return server;
}

function tooLarge(maxBody: number): HttpError {
  return new HttpError(413, `the request body is larger than ${maxBody} bytes (start the server with a larger --max-body)`, 'invalid_request_error', 'request_too_large', { Connection: 'close' });
}

/** Read and discard the rest of a body (so the client gets our answer), up to `limit` bytes; past that, drop the connection. */
async function drain(req: http.IncomingMessage, limit: number): Promise<void> {
  let n = 0;
  try {
    for await (const chunk of req as AsyncIterable<Buffer>) {
      n += chunk.length;
      if (n > limit) {
        req.socket.destroy();
        return;
      }
    }
  } catch {
    // the client went away
  }
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

function isAsyncIterable(x: unknown): x is AsyncIterable<unknown> {
  return typeof x === 'object' && x !== null && Symbol.asyncIterator in x;
}

async function streamSse(res: http.ServerResponse, chunks: AsyncIterable<unknown>, signal: AbortSignal): Promise<void> {
  res.writeHead(200, {
    'Content-Type': 'text/event-stream; charset=utf-8',
    'Cache-Control': 'no-cache',
    Connection: 'keep-alive',
    'X-Accel-Buffering': 'no',
  });
  res.flushHeaders();
  const write = async (s: string) => {
    if (!res.write(s)) await new Promise<void>((r) => {
      const done = () => {
        res.off('drain', done);
        res.off('close', done);
        r();
      };
      res.on('drain', done);
      res.on('close', done);
    });
  };
  try {
    for await (const chunk of chunks) {
      if (signal.aborted) return;
      await write(`data: ${JSON.stringify(chunk)}\n\n`);
    }
    await write('data: [DONE]\n\n');
  } catch (e) {
    if (signal.aborted) return; // the client left; nothing to tell
    const { body } = errorBody(e);
    if (!res.writableEnded) res.write(`data: ${JSON.stringify(body)}\n\n`);
  } finally {
    if (!res.writableEnded) res.end();
  }
}

/** OpenAI's error JSON and the status for any error. */
export function errorBody(e: unknown): { status: number; body: { error: { message: string; type: string; param: string | null; code: string | null } }; headers: Record<string, string> } {
  if (e instanceof HttpError) return { status: e.status, body: { error: { message: e.message, type: e.type, param: null, code: e.code } }, headers: e.headers };
  if (e instanceof LlamatsError) {
    const status = HTTP_STATUS[e.code];
    const param = e instanceof InvalidRequestError ? (e.param ?? null) : null;
    const type = status === 429 ? 'rate_limit_error' : status >= 500 ? 'server_error' : 'invalid_request_error';
    const code = { CONTEXT_OVERFLOW: 'context_length_exceeded', MODEL_NOT_FOUND: 'model_not_found', RATE_LIMITED: 'rate_limit_exceeded', INVALID_ARGUMENT: 'invalid_value', OUT_OF_MEMORY: 'out_of_memory' }[e.code as string] ?? null;
    const headers: Record<string, string> = e instanceof RateLimitError ? { 'Retry-After': String(e.retryAfterSeconds) } : {};
    return { status, body: { error: { message: e.message, type, param, code } }, headers };
  }
  return { status: 500, body: { error: { message: 'internal server error (see the server log)', type: 'server_error', param: null, code: null } }, headers: {} };
}

function sendError(res: http.ServerResponse, e: unknown): void {
  if (res.destroyed || res.writableEnded || (e as Error)?.name === 'AbortError') {
    if (!res.writableEnded) res.end(); // the client left (or aborted): nothing to answer
    return;
  }
  const { status, body, headers } = errorBody(e);
  if (status >= 500 && !(e instanceof LlamatsError)) process.stderr.write(`llamats serve: internal error: ${(e as Error)?.stack ?? String(e)}\n`);
  if (res.headersSent) {
    if (!res.writableEnded) res.end();
    return;
  }
  sendJson(res, status, body, headers);
}

function sendJson(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  send(res, status, JSON.stringify(body), { 'Content-Type': 'application/json', ...headers });
}

function send(res: http.ServerResponse, status: number, body: string, headers: Record<string, string>): void {
  if (res.destroyed) return;
  res.writeHead(status, { 'Content-Length': Buffer.byteLength(body), 'X-Content-Type-Options': 'nosniff', ...headers });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

/** A request body as JSON, or an InvalidRequestError (400) — never a stack overflow later. */
export function parseJsonBody(text: string): unknown {
  // validation quotes values back (JSON.stringify): refuse what would overflow the stack there
  if (jsonDepth(text) > MAX_JSON_DEPTH) throw new InvalidRequestError(`the body nests arrays / objects more than ${MAX_JSON_DEPTH} deep`);
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new InvalidRequestError(`the body is not valid JSON: ${(e as Error).message}`);
  }
}
