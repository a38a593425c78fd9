/**
 * Hugging Face `tokenizer.json` (the `tokenizers` library's format), encoding and decoding as
 * `tokenizers` does (checked against tokenizers-rs 0.22 and tiktoken; see test/fixtures/hf).
 *
 * ## The pipeline (each part chosen by its `type` field; an unknown type throws naming it)
 *   text
 *    → added tokens   split off first (leftmost-longest match, as an Aho-Corasick automaton in
 *                     LeftmostLongest mode): tokens with normalized=false are matched on the raw
 *                     text, the others on each remaining piece after normalizing it. single_word
 *                     needs no word character (\w) on either side; lstrip/rstrip swallow the
 *                     whitespace (\s*) before/after the match into the token.
 *    → normalizer     on each piece between added tokens: Sequence, Prepend, Replace, NFC/NFD/
 *                     NFKC/NFKD, Lowercase, Strip, StripAccents
 *    → pre-tokenizer  splits a piece into pre-tokens: Sequence, Split (a regex or a string, five
 *                     delimiter behaviors, invert), ByteLevel (add_prefix_space, use_regex: the
 *                     GPT-2 regex; then bytes → GPT-2's printable alphabet), Metaspace (" " → "▁",
 *                     prepend_scheme always/first/never, split), Whitespace, WhitespaceSplit, Digits
 *    → model          BPE: every pre-token's characters become ids (or, with byte_fallback, the
 *                     "<0xNN>" ids of their UTF-8 bytes; else unk_token, runs fused with fuse_unk),
 *                     then the adjacent pair with the lowest merge rank merges (leftmost first)
 *                     until none can. With ignore_merges (Llama 3) a pre-token that is a vocab
 *                     entry is that one token. Results are cached per pre-token.
 *    → post-processor TemplateProcessing / ByteLevel / Sequence / Bert / Roberta: read only to
 *                     learn which BOS / EOS tokens `add_special_tokens` would add (`addBos`,
 *                     `addEos`). `encode(text, { bos, eos })` adds exactly the tokens asked for
 *                     (bosId / eosId) and never applies the template by itself, so that every
 *                     tokenizer in llamats means the same thing by these flags.
 *   decoding: the decoder chain on the tokens' strings: ByteLevel, ByteFallback, Fuse, Replace,
 *   Strip, Metaspace, Sequence (no decoder: tokens joined by " ", as tokenizers does).
 *
 * ## Regular expressions
 * tokenizer.json regexes are Oniguruma's (tiktoken's are Rust `regex`); they are translated for
 * JavaScript's `u` mode (translateRegex): `\s` → \p{White_Space} (JavaScript's \s also matches
 * U+FEFF and misses U+0085), `\d` → \p{Nd}, `\w` → Unicode word characters, `(?i:…)` groups
 * (which Node 20 lacks) → both cases of each letter, `\p{Han}` → \p{Script=Han}.
 *
 * ## Special tokens as text
 * `encode(text)` treats the text of special added tokens ("<|begin_of_text|>", "<s>") as plain
 * text, as Meta's tiktoken-based tokenizer does by default (and tokenizers with
 * encode_special_tokens=true): user text cannot inject control tokens. `{ special: true }` matches
 * them (tokenizers' default). Non-special added tokens always match.
 *
 * ## BOS, EOS and stop tokens
 * bosId / eosId: tokenizer_config.json's bos_token / eos_token when that file is beside
 * tokenizer.json (or given), else the post-processor's template (a special token before / after
 * $A), else a well-known name ("<|begin_of_text|>", "<s>", … / "<|end_of_text|>", "</s>", …).
 * `stopIds` = eosId plus "<|end_of_text|>", "<|eot_id|>", "<|eom_id|>" where present: Llama 3
 * Instruct's config names <|eot_id|> as EOS, Meta's tokenizer <|end_of_text|>; a generation
 * should stop on either.
 *
 * ## Decoding and streaming
 * decode(ids) = tokenizers' decode(ids, skip_special_tokens=false): special tokens' text is kept
 * (as Meta's decode does); `decode(ids, { skipSpecial: true })` drops it.
 * tokenBytes(prev, id) gives the UTF-8 bytes a token adds: ByteLevel pieces map back through the
 * byte alphabet, "<0xNN>" pieces give one byte, so TextStream never splits a character. Special
 * tokens add nothing there (like SentencePiece's control tokens), and the start of the text (prev
 * < 0, or prev a special token such as BOS) is where Strip / Metaspace drop a leading space. So a
 * stream equals decode(ids, { skipSpecial: true }) — and decode(ids) when ids hold no special
 * token — except for invalid UTF-8 from byte-fallback pieces (tokenizers gives one U+FFFD per
 * byte of the run, TextStream one per maximal invalid sequence) and a Strip decoder's right side.
 */
import * as fs from 'node:fs';
import * as nodePath from 'node:path';
import { FileFormatError, InvalidArgumentError, UnsupportedModelError } from '../errors.js';
import { readFileBytes } from '../io/file.js';
import { jsonDepth, MAX_JSON_DEPTH } from '../io/json.js';

type Json = Record<string, unknown>;

const utf8Encoder = new TextEncoder();

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

/** Strings of raw bytes: one char (code < 256) per byte. Decoders work on these. */
function toByteString(s: string): string {
  const b = utf8Encoder.encode(s);
  let out = '';
  for (let i = 0; i < b.length; i += 0x8000) out += String.fromCharCode(...b.subarray(i, i + 0x8000));
  return out;
}
function byteStringToBytes(s: string): Uint8Array {
  const b = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) b[i] = s.charCodeAt(i);
  return b;
}
/** UTF-8 decoding with U+FFFD for each maximal invalid subsequence (Rust's from_utf8_lossy does the same). */
function byteStringToText(s: string): string {
  return new TextDecoder('utf-8', { ignoreBOM: true }).decode(byteStringToBytes(s));
}
function isValidUtf8(s: string): boolean {
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(byteStringToBytes(s));
    return true;
  } catch {
    return false;
  }
}
const REPLACEMENT_BYTES = toByteString('\ufffd');

/** The code points of a string (surrogate pairs kept together). */
function chars(s: string): string[] {
  return Array.from(s);
}

/**
 * GPT-2's byte ↔ printable-character table: bytes 0x21–0x7E, 0xA1–0xAC and 0xAE–0xFF stand for
 * themselves, the other 68 bytes map to U+0100, U+0101, … in byte order.
 */
const BYTE_TO_CHAR: string[] = [];
const CHAR_TO_BYTE = new Map<string, number>();
{
  let n = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    const c = String.fromCharCode(printable ? b : 256 + n++);
    BYTE_TO_CHAR[b] = c;
    CHAR_TO_BYTE.set(c, b);
  }
}

/** Text → GPT-2 alphabet (each UTF-8 byte becomes one character). */
function byteLevelEncode(s: string): string {
  let out = '';
  for (const b of utf8Encoder.encode(s)) out += BYTE_TO_CHAR[b]!;
  return out;
}

/** A string field of a JSON object, or a FileFormatError naming it. */
function str(o: Json, key: string, what: string, path: string): string {
  const v = o[key];
  if (typeof v !== 'string') throw new FileFormatError(path, `${what}.${key} is ${JSON.stringify(v)}; expected a string`);
  return v;
}
function bool(o: Json, key: string, fallback: boolean): boolean {
  const v = o[key];
  return typeof v === 'boolean' ? v : fallback;
}
function obj(v: unknown, what: string, path: string): Json {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new FileFormatError(path, `${what} is ${JSON.stringify(v)?.slice(0, 80)}; expected an object`);
  return v as Json;
}
function arr(v: unknown, what: string, path: string): unknown[] {
  if (!Array.isArray(v)) throw new FileFormatError(path, `${what} is ${JSON.stringify(v)?.slice(0, 80)}; expected an array`);
  return v;
}
function unknownType(kind: string, type: unknown, known: string[], path: string): never {
  throw new UnsupportedModelError(`${path}: unknown ${kind} type: ${JSON.stringify(type)}; llamats supports ${known.join(', ')}`);
}

// ---------------------------------------------------------------------------------------------
// Regular expressions: Oniguruma / Rust regex syntax → JavaScript
// ---------------------------------------------------------------------------------------------

const WORD_CLASS = '\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}';
const GENERAL_CATEGORIES = new Set(
  'L Lu Ll Lt Lm Lo LC M Mn Mc Me N Nd Nl No P Pc Pd Ps Pe Pi Pf Po S Sm Sc Sk So Z Zs Zl Zp C Cc Cf Cs Co Cn Letter Mark Number Punctuation Symbol Separator Other'.split(' '),
);

/** `\p{X}` for JavaScript: general categories and binary properties as they are, scripts as Script=X. */
function unicodeProperty(name: string, negated: boolean): string {
  const p = negated ? 'P' : 'p';
  if (GENERAL_CATEGORIES.has(name) || name.includes('=')) return `\\${p}{${name}}`;
  try {
    new RegExp(`\\p{${name}}`, 'u');
    return `\\${p}{${name}}`;
  } catch {
    return `\\${p}{Script=${name}}`;
  }
}

/** Both cases of a character, for (?i:…) groups. */
function caseVariants(c: string): string[] {
  const set = new Set([c, c.toLowerCase(), c.toUpperCase()]);
  return [...set].filter((x) => chars(x).length === 1);
}
const escapeClassChar = (c: string) => (/[\\\]\[^-]/.test(c) ? `\\${c}` : c);

/**
 * Translate a tokenizer.json / tiktoken regex for JavaScript's `u` mode (see the file comment).
 * Throws UnsupportedModelError naming the pattern when it uses what JavaScript lacks.
 */
export function translateRegex(pattern: string, path = '<memory>'): RegExp {
  const fail = (why: string): never => {
    throw new UnsupportedModelError(`${path}: cannot use the regex ${JSON.stringify(pattern)}: ${why}`);
  };
  let out = '';
  const groups: boolean[] = []; // per open group: case-insensitive inside?
  let ci = false;
  let inClass = false;
  const cs = chars(pattern);
  for (let i = 0; i < cs.length; i++) {
    const c = cs[i]!;
    if (c === '\\') {
      const e = cs[++i];
      if (e === undefined) fail('it ends with a backslash');
      if (e === 's' || e === 'S') out += e === 's' ? '\\p{White_Space}' : '\\P{White_Space}';
      else if (e === 'd' || e === 'D') out += e === 'd' ? '\\p{Nd}' : '\\P{Nd}';
      else if (e === 'w') out += inClass ? WORD_CLASS : `[${WORD_CLASS}]`;
      else if (e === 'W') {
        if (inClass) fail('\\W inside a character class');
        out += `[^${WORD_CLASS}]`;
      } else if (e === 'p' || e === 'P') {
        // \pL or \p{L}; Oniguruma's \p{^L} is a negation
        let name: string;
        if (cs[i + 1] === '{') {
          const end = cs.indexOf('}', i + 2);
          if (end < 0) fail('an unterminated \\p{');
          name = cs.slice(i + 2, end).join('');
          i = end;
        } else name = cs[++i] ?? fail('\\p without a property');
        let negated = e === 'P';
        if (name.startsWith('^')) {
          negated = !negated;
          name = name.slice(1);
        }
        out += unicodeProperty(name, negated);
      } else if (e === 'x' && cs[i + 1] === '{') {
        const end = cs.indexOf('}', i + 2);
        if (end < 0) fail('an unterminated \\x{');
        out += `\\u{${cs.slice(i + 2, end).join('')}}`;
        i = end;
      } else if (e === 'A') out += '^';
      else if (e === 'z') out += '$';
      else if (!/[\p{L}\p{N}]/u.test(e) && !'^$\\.*+?()[]{}|/'.includes(e) && !(inClass && e === '-')) {
        out += `\\u{${e.codePointAt(0)!.toString(16)}}`; // \' \" \# …: identity escapes that u-mode refuses
      } else out += `\\${e}`; // \t \n \r \uHHHH \. …; JavaScript refuses escapes it lacks (caught below)
      continue;
    }
    if (inClass) {
      if (c === ']') inClass = false;
      if (c === '[') fail('a nested character class');
      if (ci && cs[i + 1] === '-' && cs[i + 2] !== ']' && /\p{L}/u.test(c)) fail('a letter range inside a case-insensitive group');
      out += ci && /\p{L}/u.test(c) ? caseVariants(c).map(escapeClassChar).join('') : c;
      continue;
    }
    if (c === '[') {
      inClass = true;
      out += c;
      if (cs[i + 1] === '^') out += cs[++i];
      if (cs[i + 1] === ']') out += `\\${cs[++i]}`; // a leading ] is literal in Oniguruma
      continue;
    }
    if (c === '(') {
      const rest = cs.slice(i + 1, i + 5).join('');
      if (rest.startsWith('?i:') || rest.startsWith('?-i:')) {
        groups.push(ci);
        ci = rest.startsWith('?i:');
        out += '(?:';
        i += ci ? 3 : 4;
        continue;
      }
      if (rest.startsWith('?i)')) {
        ci = true; // (?i) switches the rest of the enclosing group
        i += 3;
        continue;
      }
      if (rest.startsWith('?>')) fail('an atomic group (?>…)');
      groups.push(ci);
      out += c;
      continue;
    }
    if (c === ')') {
      ci = groups.pop() ?? fail('an unbalanced )');
      out += c;
      continue;
    }
    if ((c === '+' || c === '*' || c === '?' || c === '}') && cs[i + 1] === '+') fail('a possessive quantifier');
    if (ci && /\p{L}/u.test(c)) {
      const v = caseVariants(c);
      out += v.length > 1 ? `[${v.map(escapeClassChar).join('')}]` : c;
      continue;
    }
    out += c;
  }
  try {
    return new RegExp(out, 'gu');
  } catch (e) {
    return fail(`${(e as Error).message} (translated to ${out})`);
  }
}

/** The GPT-2 pre-tokenization regex (ByteLevel with use_regex). */
export const GPT2_PATTERN = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
/** Llama 3's regex (tokenizer.json's Split and Meta's tiktoken pat_str). */
export const LLAMA3_PATTERN = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

// ---------------------------------------------------------------------------------------------
// Normalizers: text → text, applied to each piece between added tokens
// ---------------------------------------------------------------------------------------------

type Normalizer = (s: string) => string;

function buildNormalizer(spec: unknown, path: string): Normalizer | undefined {
  if (spec === null || spec === undefined) return undefined;
  const o = obj(spec, 'normalizer', path);
  const type = o.type;
  switch (type) {
    case 'Sequence': {
      const parts = arr(o.normalizers, 'Sequence.normalizers', path).map((n) => buildNormalizer(n, path)).filter((n): n is Normalizer => n !== undefined);
      return (s) => parts.reduce((acc, n) => n(acc), s);
    }
    case 'Prepend': {
      const p = str(o, 'prepend', 'Prepend', path);
      return (s) => (s === '' ? s : p + s); // tokenizers leaves empty text alone
    }
    case 'Replace': {
      const replace = buildReplace(o, path);
      return replace;
    }
    case 'NFC':
    case 'NFD':
    case 'NFKC':
    case 'NFKD':
      return (s) => s.normalize(type);
    case 'Lowercase':
      return (s) => s.toLowerCase();
    case 'Strip': {
      const left = bool(o, 'strip_left', true);
      const right = bool(o, 'strip_right', true);
      return (s) => {
        if (left) s = s.replace(/^\p{White_Space}+/u, '');
        if (right) s = s.replace(/\p{White_Space}+$/u, '');
        return s;
      };
    }
    case 'StripAccents':
      return (s) => s.replace(/\p{Mn}/gu, '');
    default:
      return unknownType('normalizer', type, ['Sequence', 'Prepend', 'Replace', 'NFC', 'NFD', 'NFKC', 'NFKD', 'Lowercase', 'Strip', 'StripAccents'], path);
  }
}

/** Replace { pattern: { String } | { Regex }, content }: every match replaced by content. */
function buildReplace(o: Json, path: string): (s: string) => string {
  const pattern = obj(o.pattern, 'Replace.pattern', path);
  const content = str(o, 'content', 'Replace', path);
  if (typeof pattern.String === 'string') {
    const needle = pattern.String;
    return (s) => (needle === '' ? s : s.split(needle).join(content));
  }
  if (typeof pattern.Regex === 'string') {
    const re = translateRegex(pattern.Regex, path);
    return (s) => s.replace(re, () => content);
  }
  throw new FileFormatError(path, `Replace.pattern is ${JSON.stringify(pattern)}; expected { "String": … } or { "Regex": … }`);
}

// ---------------------------------------------------------------------------------------------
// Pre-tokenizers: pieces → smaller pieces
// ---------------------------------------------------------------------------------------------

/** A piece of text and whether it starts at offset 0 of the input (Metaspace's "first"). */
interface Piece {
  text: string;
  first: boolean;
}
type PreTokenizer = (pieces: Piece[]) => Piece[];

type Behavior = 'Removed' | 'Isolated' | 'MergedWithPrevious' | 'MergedWithNext' | 'Contiguous';
const BEHAVIORS: Behavior[] = ['Removed', 'Isolated', 'MergedWithPrevious', 'MergedWithNext', 'Contiguous'];

/** [start, end, isDelimiter] spans covering `s`, from a regex's matches (tokenizers' find_matches). */
function regexSpans(s: string, re: RegExp): Array<[number, number, boolean]> {
  const spans: Array<[number, number, boolean]> = [];
  let prev = 0;
  re.lastIndex = 0;
  for (let m = re.exec(s); m !== null; m = re.exec(s)) {
    const start = m.index;
    const end = start + m[0].length;
    if (end === start) {
      re.lastIndex = start + (s.codePointAt(start)! > 0xffff ? 2 : 1); // step over an empty match
      if (start >= s.length) break;
    }
    if (prev !== start) spans.push([prev, start, false]);
    spans.push([start, end, true]);
    prev = end;
  }
  if (prev !== s.length) spans.push([prev, s.length, false]);
  return spans;
}

/** tokenizers' NormalizedString::split: delimiters handled by `behavior`, empty pieces dropped. */
function splitSpans(spans: Array<[number, number, boolean]>, behavior: Behavior): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  let prevMatch = false;
  switch (behavior) {
    case 'Removed':
      for (const [a, b, m] of spans) if (!m) out.push([a, b]);
      break;
    case 'Isolated':
      for (const [a, b] of spans) out.push([a, b]);
      break;
    case 'MergedWithPrevious':
      for (const [a, b, m] of spans) {
        if (m && !prevMatch && out.length > 0) out[out.length - 1]![1] = b;
        else out.push([a, b]);
        prevMatch = m;
      }
      break;
    case 'MergedWithNext':
      for (let i = spans.length - 1; i >= 0; i--) {
        const [a, b, m] = spans[i]!;
        if (m && !prevMatch && out.length > 0) out[out.length - 1]![0] = a;
        else out.push([a, b]);
        prevMatch = m;
      }
      out.reverse();
      break;
    case 'Contiguous':
      for (const [a, b, m] of spans) {
        if (m === prevMatch && out.length > 0) out[out.length - 1]![1] = b;
        else out.push([a, b]);
        prevMatch = m;
      }
      break;
  }
  return out.filter(([a, b]) => b > a);
}

function splitPieces(pieces: Piece[], spansOf: (s: string) => Array<[number, number, boolean]>, behavior: Behavior): Piece[] {
  const out: Piece[] = [];
  for (const p of pieces) {
    for (const [a, b] of splitSpans(spansOf(p.text), behavior)) out.push({ text: p.text.slice(a, b), first: p.first && a === 0 });
  }
  return out;
}

function buildPreTokenizer(spec: unknown, path: string): PreTokenizer | undefined {
  if (spec === null || spec === undefined) return undefined;
  const o = obj(spec, 'pre_tokenizer', path);
  const type = o.type;
  switch (type) {
    case 'Sequence': {
      const parts = arr(o.pretokenizers, 'Sequence.pretokenizers', path).map((p) => buildPreTokenizer(p, path)).filter((p): p is PreTokenizer => p !== undefined);
      return (pieces) => parts.reduce((acc, p) => p(acc), pieces);
    }
    case 'Split': {
      const behavior = o.behavior as Behavior;
      if (!BEHAVIORS.includes(behavior)) throw new FileFormatError(path, `Split.behavior is ${JSON.stringify(o.behavior)}; expected one of ${BEHAVIORS.join(', ')}`);
      const invert = bool(o, 'invert', false);
      const pattern = obj(o.pattern, 'Split.pattern', path);
      let spansOf: (s: string) => Array<[number, number, boolean]>;
      if (typeof pattern.Regex === 'string') {
        const re = translateRegex(pattern.Regex, path);
        spansOf = (s) => regexSpans(s, re);
      } else if (typeof pattern.String === 'string') {
        const re = new RegExp(pattern.String.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'), 'gu');
        spansOf = (s) => (pattern.String === '' ? [[0, s.length, false]] : regexSpans(s, re));
      } else throw new FileFormatError(path, `Split.pattern is ${JSON.stringify(pattern)}; expected { "Regex": … } or { "String": … }`);
      const spans = invert ? (s: string) => spansOf(s).map(([a, b, m]): [number, number, boolean] => [a, b, !m]) : spansOf;
      return (pieces) => splitPieces(pieces, spans, behavior);
    }
    case 'ByteLevel': {
      const addPrefixSpace = bool(o, 'add_prefix_space', true);
      const useRegex = bool(o, 'use_regex', true);
      const re = translateRegex(GPT2_PATTERN);
      return (pieces) => {
        // every piece gets the prefix space, as in tokenizers
        let out = pieces.map((p) => (addPrefixSpace && !p.text.startsWith(' ') ? { text: ' ' + p.text, first: p.first } : p));
        if (useRegex) out = splitPieces(out, (s) => regexSpans(s, re), 'Isolated');
        return out.map((p) => ({ text: byteLevelEncode(p.text), first: p.first }));
      };
    }
    case 'Metaspace': {
      const replacement = str(o, 'replacement', 'Metaspace', path);
      if (replacement === '') throw new FileFormatError(path, 'Metaspace.replacement is ""; expected a character such as "▁"'); // splitting on "" never ends
      // prepend_scheme (tokenizers ≥ 0.15) or the older add_prefix_space
      const scheme = typeof o.prepend_scheme === 'string' ? o.prepend_scheme : bool(o, 'add_prefix_space', true) ? 'always' : 'never';
      if (!['always', 'first', 'never'].includes(scheme)) throw new FileFormatError(path, `Metaspace.prepend_scheme is ${JSON.stringify(scheme)}; expected always, first or never`);
      const split = bool(o, 'split', true);
      return (pieces) => {
        const out = pieces.map((p) => {
          let text = p.text.split(' ').join(replacement);
          if (!text.startsWith(replacement) && (scheme === 'always' || (scheme === 'first' && p.first))) text = replacement + text;
          return { text, first: p.first };
        });
        if (!split) return out;
        return splitPieces(out, (s) => literalSpans(s, replacement), 'MergedWithNext');
      };
    }
    case 'WhitespaceSplit': {
      const re = /\p{White_Space}+/gu;
      return (pieces) => splitPieces(pieces, (s) => regexSpans(s, re), 'Removed');
    }
    case 'Whitespace': {
      const re = new RegExp(`[${WORD_CLASS}]+|[^${WORD_CLASS}\\p{White_Space}]+`, 'gu');
      return (pieces) => splitPieces(pieces, (s) => regexSpans(s, re).map(([a, b, m]): [number, number, boolean] => [a, b, !m]), 'Removed');
    }
    case 'Digits': {
      const re = bool(o, 'individual_digits', false) ? /\p{Nd}/gu : /\p{Nd}+/gu;
      return (pieces) => splitPieces(pieces, (s) => regexSpans(s, re), 'Isolated');
    }
    default:
      return unknownType('pre-tokenizer', type, ['Sequence', 'Split', 'ByteLevel', 'Metaspace', 'Whitespace', 'WhitespaceSplit', 'Digits'], path);
  }
}

function literalSpans(s: string, needle: string): Array<[number, number, boolean]> {
  const spans: Array<[number, number, boolean]> = [];
  let prev = 0;
  for (let i = s.indexOf(needle); i >= 0; i = s.indexOf(needle, i + needle.length)) {
    if (i > prev) spans.push([prev, i, false]);
    spans.push([i, i + needle.length, true]);
    prev = i + needle.length;
  }
  if (prev < s.length) spans.push([prev, s.length, false]);
  return spans;
}

// ---------------------------------------------------------------------------------------------
// Decoders: a chain over the tokens' strings, here as byte strings (see toByteString)
// ---------------------------------------------------------------------------------------------

/**
 * One decoder step. `tokens` are byte strings; `start` is true when tokens[0] is the first token
 * of the text; `streaming` is true when decoding one token for tokenBytes (no lossy UTF-8 repair:
 * a partial character must reach TextStream as bytes). `fused` is set once tokens were joined.
 */
type DecoderStep = (tokens: string[], ctx: { start: boolean; streaming: boolean; fused: boolean }) => string[];

const BYTE_PIECE = /^<0x([0-9A-Fa-f]{2})>$/;

function buildDecoder(spec: unknown, path: string): DecoderStep[] | undefined {
  if (spec === null || spec === undefined) return undefined;
  const o = obj(spec, 'decoder', path);
  const type = o.type;
  switch (type) {
    case 'Sequence':
      return arr(o.decoders, 'Sequence.decoders', path).flatMap((d) => buildDecoder(d, path) ?? []);
    case 'ByteLevel':
      // every character back to its byte (a token with a character outside the alphabet, such
      // as an added token's text, keeps its own UTF-8 bytes); all tokens joined into one
      return [
        (tokens, ctx) => {
          ctx.fused = true;
          let out = '';
          for (const t of tokens) {
            const text = byteStringToText(t);
            let bytes = '';
            let ok = true;
            for (const c of text) {
              const b = CHAR_TO_BYTE.get(c);
              if (b === undefined) {
                ok = false;
                break;
              }
              bytes += String.fromCharCode(b);
            }
            out += ok ? bytes : t;
          }
          return [ctx.streaming ? out : toByteString(byteStringToText(out))];
        },
      ];
    case 'ByteFallback':
      return [
        (tokens, ctx) => {
          const out: string[] = [];
          let run = '';
          const flush = () => {
            if (run === '') return;
            if (ctx.streaming || isValidUtf8(run)) out.push(run);
            else for (let i = 0; i < run.length; i++) out.push(REPLACEMENT_BYTES);
            run = '';
          };
          for (const t of tokens) {
            const m = BYTE_PIECE.exec(t);
            if (m) run += String.fromCharCode(parseInt(m[1]!, 16));
            else {
              flush();
              out.push(t);
            }
          }
          flush();
          return out;
        },
      ];
    case 'Fuse':
      return [
        (tokens, ctx) => {
          ctx.fused = true;
          return [tokens.join('')];
        },
      ];
    case 'Replace': {
      const pattern = obj(o.pattern, 'Replace.pattern', path);
      if (typeof pattern.String !== 'string') {
        const replace = buildReplace(o, path);
        return [(tokens) => tokens.map((t) => toByteString(replace(byteStringToText(t))))];
      }
      const needle = toByteString(pattern.String);
      const content = toByteString(str(o, 'content', 'Replace', path));
      return [(tokens) => tokens.map((t) => (needle === '' ? t : t.split(needle).join(content)))];
    }
    case 'Strip': {
      const content = toByteString(str(o, 'content', 'Strip', path));
      if (content === '') throw new FileFormatError(path, 'Strip.content is ""; expected a character such as " "'); // "" always matches: start / stop would loop that many times
      const left = typeof o.start === 'number' ? o.start : 0;
      const right = typeof o.stop === 'number' ? o.stop : 0;
      return [
        (tokens, ctx) =>
          tokens.map((t, i) => {
            // once the tokens are fused, the left side is the text's start (known only there)
            // and the right side its end (never known while streaming)
            const atStart = ctx.fused ? ctx.start && i === 0 : true;
            const atEnd = !(ctx.fused && ctx.streaming);
            for (let k = 0; atStart && k < left && t.startsWith(content); k++) t = t.slice(content.length);
            for (let k = 0; atEnd && k < right && t.endsWith(content); k++) t = t.slice(0, t.length - content.length);
            return t;
          }),
      ];
    }
    case 'Metaspace': {
      const replacement = toByteString(str(o, 'replacement', 'Metaspace', path));
      const scheme = typeof o.prepend_scheme === 'string' ? o.prepend_scheme : bool(o, 'add_prefix_space', true) ? 'always' : 'never';
      // as tokenizers: in the first token every "▁" is dropped, elsewhere each becomes " "
      return [(tokens, ctx) => tokens.map((t, i) => t.split(replacement).join(ctx.start && i === 0 && scheme !== 'never' ? '' : ' '))];
    }
    default:
      return unknownType('decoder', type, ['Sequence', 'ByteLevel', 'ByteFallback', 'Fuse', 'Replace', 'Strip', 'Metaspace'], path);
  }
}

// ---------------------------------------------------------------------------------------------
// Added tokens: a trie for leftmost-longest matching
// ---------------------------------------------------------------------------------------------

interface AddedToken {
  id: number;
  content: string;
  singleWord: boolean;
  lstrip: boolean;
  rstrip: boolean;
  normalized: boolean;
  special: boolean;
}

interface TrieNode {
  next: Map<number, TrieNode>;
  token: AddedToken | undefined;
}

class AddedTokenMatcher {
  private readonly root: TrieNode = { next: new Map(), token: undefined };
  readonly empty: boolean;

  constructor(tokens: Array<[string, AddedToken]>) {
    for (const [text, tok] of tokens) {
      let node = this.root;
      for (let i = 0; i < text.length; i++) {
        const c = text.charCodeAt(i);
        let child = node.next.get(c);
        if (!child) node.next.set(c, (child = { next: new Map(), token: undefined }));
        node = child;
      }
      node.token ??= tok; // the first token with this text wins
    }
    this.empty = tokens.length === 0;
  }

  /** The longest token starting at `pos`, and its end. */
  private longestAt(s: string, pos: number): [AddedToken, number] | undefined {
    let node: TrieNode | undefined = this.root;
    let best: [AddedToken, number] | undefined;
    for (let i = pos; i < s.length; i++) {
      node = node.next.get(s.charCodeAt(i));
      if (!node) break;
      if (node.token) best = [node.token, i + 1];
    }
    return best;
  }

  /**
   * tokenizers' find_matches: non-overlapping leftmost-longest matches, each either kept (an
   * added token, with lstrip/rstrip whitespace) or, when `skip` says so or single_word fails,
   * discarded without rescanning its text. Returns the pieces: [text, token or undefined].
   */
  split(s: string, skip: (t: AddedToken) => boolean): Array<[string, AddedToken | undefined]> {
    if (this.empty || s === '') return [[s, undefined]];
    const out: Array<[string, AddedToken | undefined]> = [];
    let startOffset = 0;
    for (let pos = 0; pos < s.length; ) {
      const m = this.longestAt(s, pos);
      if (!m) {
        pos++;
        continue;
      }
      const [tok, end] = m;
      let start = pos;
      let stop = end;
      pos = end;
      if (skip(tok)) continue;
      if (tok.singleWord) {
        const wordBefore = start > 0 && /[\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}]$/u.test(s.slice(Math.max(0, start - 2), start));
        const wordAfter = stop < s.length && /^[\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}]/u.test(s.slice(stop, stop + 2));
        if (wordBefore || wordAfter) continue;
      }
      if (tok.lstrip) {
        let k = start;
        while (k > 0 && /\p{White_Space}/u.test(s[k - 1]!)) k--;
        start = Math.max(k, startOffset);
      }
      if (tok.rstrip) {
        while (stop < s.length && /\p{White_Space}/u.test(s[stop]!)) stop++;
        pos = stop;
      }
      if (startOffset < start) out.push([s.slice(startOffset, start), undefined]);
      out.push([s.slice(start, stop), tok]);
      startOffset = stop;
    }
    if (startOffset < s.length) out.push([s.slice(startOffset), undefined]);
    return out;
  }
}

// ---------------------------------------------------------------------------------------------
// The BPE model
// ---------------------------------------------------------------------------------------------

/** A min-heap of merge candidates keyed by rank * 2^24 + position (lowest rank, then leftmost). */
class MergeHeap {
  keys: number[] = [];
  ids: number[] = [];
  get size(): number {
    return this.keys.length;
  }
  push(key: number, id: number): void {
    const k = this.keys;
    const v = this.ids;
    let i = k.length;
    k.push(key);
    v.push(id);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (k[p]! <= key) break;
      k[i] = k[p]!;
      v[i] = v[p]!;
      i = p;
    }
    k[i] = key;
    v[i] = id;
  }
  /** Pops the smallest; returns its key, with its id in `lastId`. */
  lastId = 0;
  pop(): number {
    const k = this.keys;
    const v = this.ids;
    const top = k[0]!;
    this.lastId = v[0]!;
    const key = k.pop()!;
    const id = v.pop()!;
    const n = k.length;
    if (n > 0) {
      let i = 0;
      for (;;) {
        let c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && k[c + 1]! < k[c]!) c++;
        if (k[c]! >= key) break;
        k[i] = k[c]!;
        v[i] = v[c]!;
        i = c;
      }
      k[i] = key;
      v[i] = id;
    }
    return top;
  }
}

/**
 * Pair of ids → number, an open-addressing hash table on typed arrays (a Map keyed by
 * left * nIds + right is three times slower to build for Llama 3's 280,147 merges).
 */
class PairMap {
  private readonly mask: number;
  private readonly left: Int32Array;
  private readonly right: Int32Array;
  private readonly values: Float64Array;
  constructor(n: number) {
    let cap = 16;
    while (cap < n * 2) cap *= 2;
    this.mask = cap - 1;
    this.left = new Int32Array(cap).fill(-1);
    this.right = new Int32Array(cap);
    this.values = new Float64Array(cap);
  }
  private slot(a: number, b: number): number {
    let h = ((Math.imul(a, 0x9e3779b1) ^ Math.imul(b, 0x85ebca77)) >>> 0) & this.mask;
    while (this.left[h] !== -1 && (this.left[h] !== a || this.right[h] !== b)) h = (h + 1) & this.mask;
    return h;
  }
  set(a: number, b: number, v: number): void {
    const h = this.slot(a, b);
    this.left[h] = a;
    this.right[h] = b;
    this.values[h] = v;
  }
  get(a: number, b: number): number | undefined {
    const h = this.slot(a, b);
    return this.left[h] === -1 ? undefined : this.values[h];
  }
}

const POS_BITS = 2 ** 24; // positions in one pre-token; longer words are refused
const CACHE_CAPACITY = 10_000; // as tokenizers' BPE cache

class BpeModel {
  readonly vocab = new Map<string, number>();
  /** Merges: (left id, right id) → rank * 2^24 + new id. */
  private readonly merges: PairMap;
  private readonly nIds: number;
  private readonly unkId: number | undefined;
  private readonly cache = new Map<string, number[]>();
  private readonly byteFallback: boolean;
  private readonly fuseUnk: boolean;
  private readonly ignoreMerges: boolean;
  private readonly prefix: string;
  private readonly suffix: string;

  constructor(o: Json, path: string) {
    const vocab = obj(o.vocab, 'model.vocab', path);
    let maxId = -1;
    for (const tok in vocab) {
      const id = vocab[tok];
      if (!Number.isInteger(id) || (id as number) < 0) throw new FileFormatError(path, `model.vocab[${JSON.stringify(tok)}] is ${JSON.stringify(id)}; expected a non-negative integer id`);
      this.vocab.set(tok, id as number);
      maxId = Math.max(maxId, id as number);
    }
    this.nIds = maxId + 1;
    this.byteFallback = bool(o, 'byte_fallback', false);
    this.fuseUnk = bool(o, 'fuse_unk', false);
    this.ignoreMerges = bool(o, 'ignore_merges', false);
    this.prefix = typeof o.continuing_subword_prefix === 'string' ? o.continuing_subword_prefix : '';
    this.suffix = typeof o.end_of_word_suffix === 'string' ? o.end_of_word_suffix : '';
    // every character of every word is looked up with them (and byte-encoded whole for byte fallback)
    for (const [k, v] of [['continuing_subword_prefix', this.prefix], ['end_of_word_suffix', this.suffix]] as const) {
      if (v.length > 64) throw new FileFormatError(path, `model.${k} has ${v.length} characters; expected a short marker such as "##" or "</w>"`);
    }
    if (typeof o.dropout === 'number' && o.dropout > 0) throw new UnsupportedModelError(`${path}: BPE dropout ${o.dropout} is not supported (it makes encoding random); set "dropout": null`);
    if (typeof o.unk_token === 'string') {
      this.unkId = this.vocab.get(o.unk_token);
      if (this.unkId === undefined) throw new FileFormatError(path, `model.unk_token ${JSON.stringify(o.unk_token)} is not in the vocabulary`);
    }
    const merges = arr(o.merges ?? [], 'model.merges', path);
    this.merges = new PairMap(merges.length);
    // ranks and ids are packed into one number (rank * 2^24 + id)
    if (merges.length >= 2 ** 29 || this.nIds > POS_BITS) throw new UnsupportedModelError(`${path}: ${merges.length} merges and ${this.nIds} ids; at most 2^29 merges and 2^24 ids are supported`);
    merges.forEach((m, rank) => {
      let a: string;
      let b: string;
      if (typeof m === 'string') {
        const space = m.indexOf(' ');
        if (space < 0 || m.indexOf(' ', space + 1) >= 0) throw new FileFormatError(path, `merge ${rank} is ${JSON.stringify(m)}; expected two tokens separated by one space`);
        a = m.slice(0, space);
        b = m.slice(space + 1);
      } else if (Array.isArray(m) && m.length === 2 && typeof m[0] === 'string' && typeof m[1] === 'string') {
        [a, b] = m as [string, string];
      } else throw new FileFormatError(path, `merge ${rank} is ${JSON.stringify(m)}; expected "a b" or ["a", "b"]`);
      const merged = a + b.slice(this.prefix.length);
      const ida = this.vocab.get(a);
      const idb = this.vocab.get(b);
      const idm = this.vocab.get(merged);
      for (const [t, id] of [[a, ida], [b, idb], [merged, idm]] as const) {
        if (id === undefined) throw new FileFormatError(path, `merge ${rank} (${JSON.stringify(m)}) refers to ${JSON.stringify(t)}, which is not in the vocabulary`);
      }
      this.merges.set(ida!, idb!, rank * POS_BITS + idm!); // a repeated pair: the last wins, as in tokenizers
    });
  }

  get size(): number {
    return this.nIds;
  }

  /** Ids of one pre-token. */
  tokenize(word: string, out: number[]): void {
    if (word === '') return;
    if (this.ignoreMerges) {
      const id = this.vocab.get(word);
      if (id !== undefined) {
        out.push(id);
        return;
      }
    }
    let ids = this.cache.get(word);
    if (ids === undefined) {
      ids = this.mergeWord(word);
      if (this.cache.size < CACHE_CAPACITY) this.cache.set(word, ids);
    }
    for (const id of ids) out.push(id);
  }

  /** tokenizers' BPE::merge_word + Word::merge_all. */
  private mergeWord(word: string): number[] {
    const cs = chars(word);
    const sym: number[] = [];
    let unk = -1; // a pending unknown symbol (fused runs become one)
    for (let i = 0; i < cs.length; i++) {
      let s = cs[i]!;
      if (i > 0) s = this.prefix + s;
      if (i === cs.length - 1) s += this.suffix;
      const id = this.vocab.get(s);
      if (id !== undefined) {
        if (unk >= 0) sym.push(unk);
        unk = -1;
        sym.push(id);
        continue;
      }
      if (this.byteFallback) {
        const bytes = utf8Encoder.encode(s);
        const bids = Array.from(bytes, (b) => this.vocab.get(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`));
        if (bids.every((b) => b !== undefined)) {
          for (const b of bids) sym.push(b!);
          continue;
        }
      }
      if (this.unkId !== undefined) {
        if (unk >= 0 && !this.fuseUnk) sym.push(unk);
        unk = this.unkId;
      }
      // no unk_token: the character is dropped, as in tokenizers
    }
    if (unk >= 0) sym.push(unk);
    const n = sym.length;
    if (n < 2) return sym;
    if (n >= POS_BITS) throw new InvalidArgumentError(`a single pre-token of ${n} characters is too long to encode`);

    // symbols as a linked list; a merged-away symbol is marked dead
    const c = Int32Array.from(sym);
    const prev = new Int32Array(n);
    const next = new Int32Array(n);
    const dead = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      prev[i] = i - 1;
      next[i] = i + 1 < n ? i + 1 : -1;
    }
    const heap = new MergeHeap();
    const consider = (left: number) => {
      const right = next[left]!;
      if (left < 0 || right < 0) return;
      const m = this.merges.get(c[left]!, c[right]!);
      if (m !== undefined) heap.push(Math.floor(m / POS_BITS) * POS_BITS + left, m % POS_BITS);
    };
    for (let i = 0; i + 1 < n; i++) consider(i);
    while (heap.size > 0) {
      const pos = heap.pop() % POS_BITS;
      const newId = heap.lastId;
      if (dead[pos]) continue;
      const right = next[pos]!;
      if (right < 0) continue;
      // stale: the pair at pos no longer makes this token
      const m = this.merges.get(c[pos]!, c[right]!);
      if (m === undefined || m % POS_BITS !== newId) continue;
      c[pos] = newId;
      dead[right] = 1;
      next[pos] = next[right]!;
      if (next[right]! >= 0) prev[next[right]!] = pos;
      consider(prev[pos]!);
      consider(pos);
    }
    const out: number[] = [];
    for (let i = 0; i >= 0; i = next[i]!) out.push(c[i]!);
    return out;
  }
}

// ---------------------------------------------------------------------------------------------
// The tokenizer
// ---------------------------------------------------------------------------------------------

/** The fields of tokenizer_config.json that matter here. */
export interface HfTokenizerConfig {
  bos_token?: unknown;
  eos_token?: unknown;
  add_bos_token?: unknown;
  add_eos_token?: unknown;
  chat_template?: unknown;
  [key: string]: unknown;
}

const BOS_NAMES = ['<|begin_of_text|>', '<s>', '<bos>', '<|startoftext|>'];
const EOS_NAMES = ['<|end_of_text|>', '</s>', '<eos>', '<|endoftext|>'];
const STOP_NAMES = ['<|end_of_text|>', '<|eot_id|>', '<|eom_id|>'];

/** A special-token entry of tokenizer_config.json: a string or { content }. */
function tokenText(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (typeof v === 'object' && v !== null && typeof (v as Json).content === 'string') return (v as Json).content as string;
  return undefined;
}

export class HfTokenizer {
  readonly vocabSize: number;
  readonly bosId: number;
  readonly eosId: number;
  /** Tokens that end a generation: eosId, and <|end_of_text|>, <|eot_id|>, <|eom_id|> when present. */
  readonly stopIds: readonly number[];
  /** Whether tokenizers' `add_special_tokens=True` would put BOS in front / EOS at the end. */
  readonly addBos: boolean;
  readonly addEos: boolean;
  /** tokenizer_config.json's chat_template (the "default" one when it holds several). */
  readonly chatTemplate: string | undefined;
  readonly path: string;

  private readonly model: BpeModel;
  private readonly normalizer: Normalizer | undefined;
  private readonly preTokenizer: PreTokenizer | undefined;
  private readonly decoder: DecoderStep[] | undefined;
  private readonly added = new Map<number, AddedToken>();
  private readonly addedIds = new Map<string, number>();
  private readonly rawMatcher: AddedTokenMatcher;
  private readonly normalizedMatcher: AddedTokenMatcher;
  /** Per id: its string (vocab entry or added token content). */
  private readonly pieces: string[];

  /** Read tokenizer.json (a file, or a directory holding it); tokenizer_config.json beside it is read too. */
  static load(path: string): HfTokenizer {
    let file = path;
    if (fs.existsSync(path) && fs.statSync(path).isDirectory()) file = nodePath.join(path, 'tokenizer.json');
    const config = readConfigBeside(file);
    return HfTokenizer.parse(readFileBytes(file), { path: file, ...(config ? { config } : {}) });
  }

  /** Parse tokenizer.json content (bytes, text or the parsed object). */
  static parse(input: Uint8Array | string | Json, opts: { path?: string; config?: HfTokenizerConfig; extraStopIds?: readonly number[] } = {}): HfTokenizer {
    const path = opts.path ?? '<memory>';
    let json: unknown = input;
    if (typeof input === 'string' || input instanceof Uint8Array) {
      const text = typeof input === 'string' ? input : new TextDecoder('utf-8').decode(input);
      try {
        // real files nest about 6 deep; much deeper would overflow the recursive builders and messages
        if (jsonDepth(text) > MAX_JSON_DEPTH) throw new Error(`arrays / objects nest more than ${MAX_JSON_DEPTH} deep`);
        json = JSON.parse(text);
      } catch (e) {
        throw new FileFormatError(path, `is not valid JSON (${(e as Error).message}); expected a Hugging Face tokenizer.json`, { cause: e });
      }
    }
    return new HfTokenizer(obj(json, 'tokenizer.json', path), opts.config, path, opts.extraStopIds ?? []);
  }

  private constructor(json: Json, config: HfTokenizerConfig | undefined, path: string, extraStopIds: readonly number[]) {
    this.path = path;
    const model = obj(json.model, 'model', path);
    // tokenizers writes "type"; very old files may omit it for BPE (they have merges)
    const modelType = model.type ?? (model.merges !== undefined ? 'BPE' : undefined);
    if (modelType !== 'BPE') unknownType('model', modelType, ['BPE'], path);
    this.model = new BpeModel(model, path);
    this.normalizer = buildNormalizer(json.normalizer, path);
    this.preTokenizer = buildPreTokenizer(json.pre_tokenizer, path);
    this.decoder = buildDecoder(json.decoder, path);

    // added tokens
    let size = this.model.size;
    for (const [i, a] of arr(json.added_tokens ?? [], 'added_tokens', path).entries()) {
      const t = obj(a, `added_tokens[${i}]`, path);
      const id = t.id;
      // (ids index arrays: a huge one would allocate that many slots; the model's vocab ids have the same bound)
      if (!Number.isInteger(id) || (id as number) < 0 || (id as number) >= POS_BITS) throw new FileFormatError(path, `added_tokens[${i}].id is ${JSON.stringify(id)}; expected an integer in [0, 2^24)`);
      const content = str(t, 'content', `added_tokens[${i}]`, path);
      const special = bool(t, 'special', false);
      const tok: AddedToken = {
        id: id as number,
        content,
        special,
        singleWord: bool(t, 'single_word', false),
        lstrip: bool(t, 'lstrip', false),
        rstrip: bool(t, 'rstrip', false),
        normalized: bool(t, 'normalized', !special),
      };
      this.added.set(tok.id, tok);
      this.addedIds.set(content, tok.id);
      size = Math.max(size, tok.id + 1);
    }
    this.vocabSize = size;
    this.pieces = new Array<string>(size);
    for (const [tok, id] of this.model.vocab) this.pieces[id] = tok;
    for (const [id, t] of this.added) this.pieces[id] = t.content;
    const addedList = [...this.added.values()].filter((t) => t.content !== '');
    this.rawMatcher = new AddedTokenMatcher(addedList.filter((t) => !t.normalized).map((t) => [t.content, t]));
    this.normalizedMatcher = new AddedTokenMatcher(addedList.filter((t) => t.normalized).map((t) => [this.normalizer ? this.normalizer(t.content) : t.content, t]));

    // BOS / EOS: config, then the post-processor's template, then well-known names
    const template = templateSpecials(json.post_processor, path);
    const idOf = (text: string | undefined) => (text === undefined ? undefined : this.tokenToId(text));
    const byName = (names: string[]) => names.map((n) => this.tokenToId(n)).find((id) => id !== undefined);
    this.bosId = idOf(tokenText(config?.bos_token)) ?? template.bos ?? byName(BOS_NAMES) ?? -1;
    this.eosId = idOf(tokenText(config?.eos_token)) ?? template.eos ?? byName(EOS_NAMES) ?? -1;
    this.addBos = typeof config?.add_bos_token === 'boolean' ? config.add_bos_token : template.bos !== undefined;
    this.addEos = typeof config?.add_eos_token === 'boolean' ? config.add_eos_token : template.eos !== undefined;
    const stops = [this.eosId, ...STOP_NAMES.map((n) => this.addedIds.get(n) ?? -1), ...extraStopIds].filter((id) => id >= 0);
    this.stopIds = [...new Set(stops)];
    this.chatTemplate = chatTemplateOf(config?.chat_template);
  }

  /** The id of a token's exact text (an added token or a vocab entry), or undefined. */
  tokenToId(text: string): number | undefined {
    return this.addedIds.get(text) ?? this.model.vocab.get(text);
  }

  /** Whether `id` is a special added token (BOS, EOS, <|eot_id|>, …). */
  isSpecial(id: number): boolean {
    return this.added.get(id)?.special === true;
  }

  // ---- encoding ------------------------------------------------------------------------------

  /**
   * Token ids of `text`. `bos` / `eos` add bosId / eosId (default false; see the file comment);
   * `special` lets the text of special tokens become their ids (default false: plain text).
   */
  encode(text: string, opts: { bos?: boolean; eos?: boolean; special?: boolean } = {}): number[] {
    const ids: number[] = [];
    if (opts.bos) ids.push(this.required(this.bosId, 'BOS'));
    const skip = opts.special ? () => false : (t: AddedToken) => t.special;
    let atStart = true;
    for (const [raw, tok] of this.rawMatcher.split(text, skip)) {
      if (tok) {
        ids.push(tok.id);
        atStart = false;
        continue;
      }
      const normalized = this.normalizer ? this.normalizer(raw) : raw;
      for (const [piece, ntok] of this.normalizedMatcher.split(normalized, skip)) {
        if (ntok) ids.push(ntok.id);
        else this.encodePiece(piece, atStart, ids);
        atStart = false;
      }
    }
    if (opts.eos) ids.push(this.required(this.eosId, 'EOS'));
    return ids;
  }

  /** Pre-tokenize one piece of normalized text and run the model on each pre-token. */
  private encodePiece(text: string, first: boolean, out: number[]): void {
    if (text === '') return;
    const pieces = this.preTokenizer ? this.preTokenizer([{ text, first }]) : [{ text, first }];
    for (const p of pieces) this.model.tokenize(p.text, out);
  }

  private required(id: number, what: string): number {
    if (id < 0) throw new InvalidArgumentError(`${this.path}: this tokenizer has no ${what} token (add ${what.toLowerCase()}_token to tokenizer_config.json)`);
    return id;
  }

  // ---- decoding ------------------------------------------------------------------------------

  /** The vocabulary entry of `id` ("Ġhello" for byte-level vocabularies, "<0x0A>" for byte pieces). */
  piece(id: number): string {
    const p = Number.isInteger(id) ? this.pieces[id] : undefined;
    if (p === undefined) throw new InvalidArgumentError(`token id ${id} is outside the vocabulary [0, ${this.vocabSize})`, 'token');
    return p;
  }

  /** Run the decoder chain on token strings; returns a byte string. */
  private runDecoder(tokens: string[], start: boolean, streaming: boolean): string {
    if (!this.decoder) return tokens.join(' ');
    const ctx = { start, streaming, fused: false };
    let t = tokens.map(toByteString);
    for (const step of this.decoder) t = step(t, ctx);
    return t.join('');
  }

  /** Text of `ids`, as tokenizers' decode(ids, skip_special_tokens = skipSpecial (default false)). */
  decode(ids: readonly number[], opts: { skipSpecial?: boolean } = {}): string {
    const tokens = ids.filter((id) => !(opts.skipSpecial && this.isSpecial(id))).map((id) => this.piece(id));
    if (!this.decoder) return tokens.join(' ');
    return byteStringToText(this.runDecoder(tokens, true, false));
  }

  /**
   * The UTF-8 bytes token `id` adds after token `prev` (prev < 0 at the start), for TextStream:
   * nothing for special tokens; the start of the text is prev < 0 or prev special (see the file comment).
   */
  tokenBytes(prev: number, id: number): Uint8Array {
    const p = this.piece(id);
    if (this.isSpecial(id)) return new Uint8Array(0);
    const start = prev < 0 || this.isSpecial(prev);
    if (!this.decoder) return utf8Encoder.encode(start ? p : ' ' + p);
    return byteStringToBytes(this.runDecoder([p], start, true));
  }
}

/** BOS / EOS ids that the post-processor's template puts around $A (single sequence). */
function templateSpecials(spec: unknown, path: string): { bos?: number; eos?: number } {
  if (spec === null || spec === undefined) return {};
  const o = obj(spec, 'post_processor', path);
  switch (o.type) {
    case 'Sequence': {
      const found: { bos?: number; eos?: number } = {};
      for (const p of arr(o.processors, 'post_processor.processors', path)) {
        const s = templateSpecials(p, path);
        if (s.bos !== undefined) found.bos = s.bos;
        if (s.eos !== undefined) found.eos = s.eos;
      }
      return found;
    }
    case 'TemplateProcessing': {
      const specials = (o.special_tokens ?? {}) as Json;
      const idOf = (name: string) => {
        const entry = specials[name] as Json | undefined;
        const ids = entry?.ids;
        if (!Array.isArray(ids) || ids.length === 0 || typeof ids[0] !== 'number') throw new FileFormatError(path, `post_processor.special_tokens has no ids for ${JSON.stringify(name)}`);
        return ids[0] as number;
      };
      const found: { bos?: number; eos?: number } = {};
      let seenA = false;
      for (const item of arr(o.single, 'TemplateProcessing.single', path)) {
        const it = obj(item, 'an item of TemplateProcessing.single', path);
        if (it.Sequence) seenA = true;
        else if (it.SpecialToken) {
          const id = idOf(str(it.SpecialToken as Json, 'id', 'SpecialToken', path));
          if (!seenA) found.bos ??= id;
          else found.eos ??= id;
        }
      }
      return found;
    }
    case 'BertProcessing':
    case 'RobertaProcessing': {
      // cls / sep: [text, id]
      const cls = o.cls as unknown[] | undefined;
      const sep = o.sep as unknown[] | undefined;
      return { ...(typeof cls?.[1] === 'number' ? { bos: cls[1] } : {}), ...(typeof sep?.[1] === 'number' ? { eos: sep[1] } : {}) };
    }
    case 'ByteLevel':
      return {};
    default:
      return unknownType('post-processor', o.type, ['Sequence', 'TemplateProcessing', 'ByteLevel', 'BertProcessing', 'RobertaProcessing'], path);
  }
}

/** chat_template: a string, or a list of { name, template } (the "default" one is taken). */
function chatTemplateOf(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (Array.isArray(v)) {
    const named = v.find((t) => (t as Json)?.name === 'default') ?? v[0];
    const t = (named as Json | undefined)?.template;
    return typeof t === 'string' ? t : undefined;
  }
  return undefined;
}

/** tokenizer_config.json next to `file`, if there is one. */
export function readConfigBeside(file: string): HfTokenizerConfig | undefined {
  const p = nodePath.join(nodePath.dirname(file), 'tokenizer_config.json');
  if (!fs.existsSync(p)) return undefined;
  const text = new TextDecoder('utf-8').decode(readFileBytes(p));
  try {
    return obj(JSON.parse(text), 'tokenizer_config.json', p) as HfTokenizerConfig;
  } catch (e) {
    if (e instanceof FileFormatError) throw e;
    throw new FileFormatError(p, `is not valid JSON (${(e as Error).message})`, { cause: e });
  }
}

// ---------------------------------------------------------------------------------------------
// A tokenizer.json from a SentencePiece BPE vocabulary (what transformers' LlamaConverter writes)
// ---------------------------------------------------------------------------------------------

/**
 * The Llama 2 style tokenizer.json that transformers' `LlamaConverter` (legacy mode) makes from
 * a SentencePiece BPE model: vocabulary = the pieces, merges = every split of a piece into two
 * pieces, ordered by the merged piece's score (highest first, stable), within a piece by the ids
 * of the two halves; normalizer Prepend("▁") + Replace(" " → "▁"); byte fallback; decoder
 * Replace("▁" → " "), ByteFallback, Fuse, Strip(1 leading space); BOS added by the template.
 * `types`: SentencePiece piece types (2 UNKNOWN, 3 CONTROL become special added tokens).
 */
export function sentencePieceToTokenizerJson(sp: { pieces: readonly string[]; scores: ArrayLike<number>; types: ArrayLike<number> }): Json {
  const ids = new Map<string, number>(); // (a Map: pieces such as "constructor" are not object keys to test with `in`)
  sp.pieces.forEach((p, i) => {
    if (!ids.has(p)) ids.set(p, i);
  });
  const merges: Array<[string, string, number]> = [];
  sp.pieces.forEach((piece, i) => {
    const cs = chars(piece);
    const local: Array<[string, string, number]> = [];
    for (let k = 1; k < cs.length; k++) {
      const l = cs.slice(0, k).join('');
      const r = cs.slice(k).join('');
      if (ids.has(l) && ids.has(r)) local.push([l, r, sp.scores[i]!]);
    }
    local.sort((x, y) => ids.get(x[0])! - ids.get(y[0])! || ids.get(x[1])! - ids.get(y[1])!);
    merges.push(...local);
  });
  merges.sort((x, y) => y[2] - x[2]); // stable, as Python's sorted(reverse=True)
  const vocab = Object.create(null) as Record<string, number>;
  for (const [p, i] of ids) vocab[p] = i;
  const special = sp.pieces.map((p, id) => ({ p, id })).filter(({ id }) => sp.types[id] === 2 || sp.types[id] === 3);
  const bos = sp.pieces.indexOf('<s>');
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: special.map(({ p, id }) => ({ id, content: p, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    normalizer: {
      type: 'Sequence',
      normalizers: [
        { type: 'Prepend', prepend: '▁' },
        { type: 'Replace', pattern: { String: ' ' }, content: '▁' },
      ],
    },
    pre_tokenizer: null,
    post_processor:
      bos >= 0
        ? {
            type: 'TemplateProcessing',
            single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
            pair: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '<s>', type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
            special_tokens: { '<s>': { id: '<s>', ids: [bos], tokens: ['<s>'] } },
          }
        : null,
    decoder: {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: '▁' }, content: ' ' },
        { type: 'ByteFallback' },
        { type: 'Fuse' },
        { type: 'Strip', content: ' ', start: 1, stop: 0 },
      ],
    },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: '<unk>',
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      ignore_merges: false,
      vocab,
      merges: merges.map(([l, r]) => [l, r]),
    },
  };
}
