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
