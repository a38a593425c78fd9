#!/usr/bin/env node
/**
 * The `llamats` command line. Each command lives in its own file; this one dispatches and turns
 * errors into one line on stderr and an exit code (see errors.ts for the table).
 */
import { readFileSync } from 'node:fs';
import { LlamatsError } from '../errors.js';
import { doctorCommand } from './doctor.js';
import { chatCommand, completeCommand } from './meta.js';
import { convertCommand, inspectCommand, quantizeCommand } from './models.js';
import { planCommand } from './plan.js';
import { RUN_USAGE, runCommand } from './run.js';
import { serveCommand } from './serve.js';

const HELP = `llamats — LLaMA-family language models in TypeScript

Usage: llamats <command> [options]

Commands:
  run <checkpoint>   generate text (or chat) with a llama2.c checkpoint, like llama2.c's run
  complete           text completion like Meta's example_text_completion.py (see complete --help)
  chat               chat completion like Meta's example_chat_completion.py (see chat --help)
  inspect <model>    format, dimensions, tensor types, tokenizer — without loading the weights
  convert <in> <out.gguf> [--type T]   write any supported model as GGUF
  quantize <in.gguf> <out.gguf> <T>    requantize a GGUF file (q8_0, q4_0, q4_k, q6_k, …)
  doctor [--json]    CPU, memory, NVIDIA driver, GPUs, CUDA libraries, Vulkan — and what to do next
  plan <model>       the memory a model needs against what this machine has, and what fits
  serve <model>      OpenAI-compatible HTTP server with continuous batching and a chat page (see serve --help)

Global options:
  -h, --help         show help (also: llamats <command> --help)
  -v, --version      show the version

${RUN_USAGE}
`;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

export async function main(argv: readonly string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  const io = {
    stdout: (s: string) => void process.stdout.write(s),
    stderr: (s: string) => void process.stderr.write(s),
    stdin: process.stdin,
    cwd: process.cwd(),
  };
  const verbose = argv.includes('--verbose');
  try {
    switch (cmd) {
      case undefined:
      case '-h':
      case '--help':
      case 'help':
        io.stdout(HELP);
        return cmd === undefined ? 2 : 0;
      case '-v':
      case '--version':
        io.stdout(version() + '\n');
        return 0;
      case 'run':
        return await runCommand(rest, io);
      case 'complete':
        return await completeCommand(rest, io);
      case 'chat':
        return await chatCommand(rest, io);
      case 'inspect':
        return await inspectCommand(rest, io);
      case 'convert':
        return await convertCommand(rest, io);
      case 'quantize':
        return await quantizeCommand(rest, io);
      case 'doctor':
        return await doctorCommand(rest, io);
      case 'plan':
        return await planCommand(rest, io);
      case 'serve':
        return await serveCommand(rest, io);
      default:
        io.stderr(`llamats: unknown command '${cmd}'; commands: run, complete, chat, inspect, convert, quantize, plan, doctor, serve (see 'llamats --help')\n`);
        return 2;
    }
  } catch (e) {
    if (e instanceof LlamatsError) {
      io.stderr(`llamats: ${e.message}\n`);
      if (verbose) printCauses(e, io.stderr);
      return e.exitCode;
    }
    const err = e as Error;
    io.stderr(`llamats: internal error: ${err?.message ?? String(e)} (please report it; --verbose shows the stack)\n`);
    if (verbose) io.stderr(`${err?.stack ?? ''}\n`);
    return 1;
  }
}

function printCauses(e: Error, write: (s: string) => void): void {
  let c: unknown = e.cause;
  while (c) {
    write(`  caused by: ${c instanceof Error ? c.message : String(c)}\n`);
    c = c instanceof Error ? c.cause : undefined;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    process.stderr.write(`llamats: internal error: ${(e as Error)?.message ?? String(e)}\n`);
    process.exitCode = 1;
  },
);
