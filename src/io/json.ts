import * as fs from 'node:fs';
import { FileFormatError } from '../errors.js';

/**
 * JSON from untrusted files and requests: JSON.parse recurses, so text nested thousands deep can
 * overflow the stack (a RangeError, not a typed error) in the parser or in whatever later walks
 * or stringifies the value. `jsonDepth` measures the nesting first, without parsing.
 */

/** How deeply arrays and objects nest in JSON text (a scan; brackets inside strings do not count). */
export function jsonDepth(text: string): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // a backslash escapes the next character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) max = Math.max(max, ++depth);
    else if (c === 0x5d || c === 0x7d) depth--;
  }
  return max;
}

/** The deepest nesting llamats accepts in any JSON it reads (real files and requests use < 10). */
export const MAX_JSON_DEPTH = 64;

/**
 * A JSON object from a file: a missing file is FILE_NOT_FOUND with `missing` as the message, text
 * that is not JSON (or nests too deep) or is not an object is a FileFormatError naming the file.
 */
export function readJsonObjectFile(file: string, missing: string): Record<string, unknown> {
  let raw: unknown;
  try {
    const text = fs.readFileSync(file, 'utf8');
    // (deeper is garbage, and messages could not even describe it: JSON.stringify recurses)
    if (jsonDepth(text) > MAX_JSON_DEPTH) throw new Error(`arrays / objects nest more than ${MAX_JSON_DEPTH} deep`);
    raw = JSON.parse(text);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new FileFormatError(file, missing, { code: 'FILE_NOT_FOUND' });
    throw new FileFormatError(file, `is not valid JSON: ${(e as Error).message}`, { cause: e });
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new FileFormatError(file, 'expected a JSON object');
  return raw as Record<string, unknown>;
}
