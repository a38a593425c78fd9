/**
 * The chat page `llamats serve` answers GET / with: one self-contained HTML file (inline CSS and
 * JS, no framework, nothing fetched from anywhere but this server's /v1 API).
 *
 * It streams the answer from POST /v1/chat/completions as it arrives, has a stop button (aborts
 * the fetch: the server frees the slot), a system prompt, temperature and max-tokens controls, an
 * API-key field (for --api-key), shows tokens and tok/s of each answer, keeps the conversation in
 * the page (and in localStorage, so a reload keeps it; "New chat" clears it), and fits a phone.
 * Text is always inserted as text (textContent), never as HTML.
 *
 * Kept in a TypeScript string so that it ships inside dist/ with the code; the JS inside uses no
 * template literals. PAGE_CSP allows exactly this page's inline script and style (by hash).
 */
import { createHash } from 'node:crypto';

const STYLE = String.raw`
:root { color-scheme: light dark; --bg: #fff; --fg: #1b1b1f; --muted: #6b6b76; --user: #e8f0fe; --bot: #f3f3f5; --accent: #2563eb; --err: #b91c1c; --border: #d4d4d8; }
@media (prefers-color-scheme: dark) { :root { --bg: #111114; --fg: #ececf1; --muted: #9a9aa5; --user: #1e2a44; --bot: #1f1f24; --accent: #60a5fa; --err: #f87171; --border: #3f3f46; } }
* { box-sizing: border-box; }
html, body { height: 100%; margin: 0; }
body { font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; background: var(--bg); color: var(--fg); display: flex; flex-direction: column; max-width: 52rem; margin: 0 auto; }
header { display: flex; align-items: center; gap: .75rem; padding: .6rem .9rem; border-bottom: 1px solid var(--border); flex-wrap: wrap; }
header h1 { font-size: 1.05rem; margin: 0; }
#model { color: var(--muted); font-size: .9rem; }
#stats { margin-left: auto; color: var(--muted); font-size: .85rem; font-variant-numeric: tabular-nums; }
details { padding: .3rem .9rem; border-bottom: 1px solid var(--border); }
summary { cursor: pointer; color: var(--muted); font-size: .9rem; }
.settings { display: grid; grid-template-columns: 1fr 1fr; gap: .5rem .8rem; padding: .5rem 0; }
.settings label { display: flex; flex-direction: column; font-size: .85rem; color: var(--muted); gap: .2rem; }
.settings .wide { grid-column: 1 / -1; }
input, textarea, button { font: inherit; color: inherit; }
input, textarea { background: var(--bg); border: 1px solid var(--border); border-radius: .4rem; padding: .4rem .5rem; width: 100%; }
#messages { flex: 1; overflow-y: auto; padding: .8rem .9rem; display: flex; flex-direction: column; gap: .6rem; }
.msg { padding: .55rem .75rem; border-radius: .7rem; white-space: pre-wrap; overflow-wrap: anywhere; max-width: 92%; }
.msg.user { background: var(--user); align-self: flex-end; }
.msg.assistant { background: var(--bot); align-self: flex-start; }
.msg.error { color: var(--err); background: transparent; border: 1px solid var(--err); }
.msg .meta { display: block; margin-top: .25rem; font-size: .75rem; color: var(--muted); }
.empty { color: var(--muted); text-align: center; margin: auto; }
form { display: flex; gap: .5rem; padding: .6rem .9rem calc(.6rem + env(safe-area-inset-bottom)); border-top: 1px solid var(--border); }
form textarea { resize: none; height: 2.8rem; flex: 1; }
button { border: 0; border-radius: .4rem; padding: 0 1rem; background: var(--accent); color: #fff; cursor: pointer; min-height: 2.8rem; }
button.secondary { background: transparent; color: var(--muted); border: 1px solid var(--border); padding: 0 .7rem; min-height: 2rem; }
button[hidden] { display: none; }
button:disabled { opacity: .5; cursor: default; }
@media (max-width: 30rem) { .settings { grid-template-columns: 1fr; } body { font-size: 15px; } }
`;

const SCRIPT = String.raw`
(function () {
  var $ = function (id) { return document.getElementById(id); };
  var store = window.localStorage;
  var state = { messages: [], controller: null };
  var model = '';

  function load() {
    try { state.messages = JSON.parse(store.getItem('llamats.chat') || '[]'); } catch (e) { state.messages = []; }
    var s = JSON.parse(store.getItem('llamats.settings') || '{}');
    if (typeof s.system === 'string') $('system').value = s.system;
    if (typeof s.temperature === 'number') $('temperature').value = s.temperature;
    if (typeof s.maxTokens === 'number') $('max-tokens').value = s.maxTokens;
    if (typeof s.apiKey === 'string') $('api-key').value = s.apiKey;
  }
  function save() {
    store.setItem('llamats.chat', JSON.stringify(state.messages));
    store.setItem('llamats.settings', JSON.stringify({ system: $('system').value, temperature: Number($('temperature').value), maxTokens: Number($('max-tokens').value), apiKey: $('api-key').value }));
  }
  function headers() {
    var h = { 'Content-Type': 'application/json' };
    var key = $('api-key').value.trim();
    if (key) h.Authorization = 'Bearer ' + key;
    return h;
  }

  function bubble(m) {
    var div = document.createElement('div');
    div.className = 'msg ' + m.role;
    var text = document.createElement('span');
    text.className = 'text';
    text.textContent = m.content;
    div.appendChild(text);
    if (m.meta) {
      var meta = document.createElement('span');
      meta.className = 'meta';
      meta.textContent = m.meta;
      div.appendChild(meta);
    }
    return div;
  }
  function render() {
    var box = $('messages');
    box.textContent = '';
    if (state.messages.length === 0) {
      var p = document.createElement('p');
      p.className = 'empty';
      p.textContent = 'Send a message to start.';
      box.appendChild(p);
    }
    state.messages.forEach(function (m) { box.appendChild(bubble(m)); });
    box.scrollTop = box.scrollHeight;
  }
  function busy(on) {
    $('send').hidden = on;
    $('stop').hidden = !on;
    $('input').disabled = false;
  }

  async function send(text) {
    var user = { role: 'user', content: text };
    state.messages.push(user);
    var answer = { role: 'assistant', content: '', meta: '' };
    state.messages.push(answer);
    render();
    var node = $('messages').lastChild;
    var textNode = node.querySelector('.text');
    var meta = document.createElement('span');
    meta.className = 'meta';
    meta.textContent = 'waiting…';
    node.appendChild(meta);

    var history = state.messages.filter(function (m) { return m.role === 'user' || (m.role === 'assistant' && m !== answer && m.content); });
    var system = $('system').value.trim();
    // consecutive turns of one role (after an error or an empty stopped answer) become one: chat formats alternate
    var turns = [];
    history.forEach(function (m) {
      var last = turns[turns.length - 1];
      if (last && last.role === m.role) last.content += '\n\n' + m.content;
      else turns.push({ role: m.role, content: m.content });
    });
    var messages = (system ? [{ role: 'system', content: system }] : []).concat(turns);
    var body = { model: model, messages: messages, stream: true, stream_options: { include_usage: true }, temperature: Number($('temperature').value) };
    var maxTokens = Number($('max-tokens').value);
    if (maxTokens > 0) body.max_tokens = maxTokens;

    var controller = new AbortController();
    state.controller = controller;
    busy(true);
    save();
    var started = performance.now(), first = 0, tokens = 0, stopped = false, finish = '';
    function stats() {
      var secs = first ? (performance.now() - first) / 1000 : 0;
      var rate = secs > 0 && tokens > 1 ? ((tokens - 1) / secs).toFixed(1) + ' tok/s' : '';
      var line = tokens + ' tokens' + (rate ? ' · ' + rate : '') + (first ? ' · first token ' + Math.round(first - started) + ' ms' : '');
      $('stats').textContent = rate || '';
      return line;
    }
    try {
      var res = await fetch('/v1/chat/completions', { method: 'POST', headers: headers(), body: JSON.stringify(body), signal: controller.signal });
      if (!res.ok) {
        var err = await res.json().catch(function () { return {}; });
        throw new Error((err.error && err.error.message) || ('HTTP ' + res.status));
      }
      var reader = res.body.getReader();
      var decoder = new TextDecoder();
      var buf = '';
      for (;;) {
        var r = await reader.read();
        if (r.done) break;
        buf += decoder.decode(r.value, { stream: true });
        var events = buf.split('\n\n');
        buf = events.pop();
        for (var i = 0; i < events.length; i++) {
          var line = events[i].trim();
          if (line.indexOf('data: ') !== 0) continue;
          var data = line.slice(6);
          if (data === '[DONE]') continue;
          var chunk = JSON.parse(data);
          if (chunk.error) throw new Error(chunk.error.message);
          if (chunk.usage) tokens = chunk.usage.completion_tokens;
          var c = chunk.choices && chunk.choices[0];
          if (!c) continue;
          if (c.delta && c.delta.content) {
            if (!first) first = performance.now();
            tokens++;
            answer.content += c.delta.content;
            textNode.textContent = answer.content;
            $('messages').scrollTop = $('messages').scrollHeight;
          }
          if (c.finish_reason) finish = c.finish_reason;
          meta.textContent = stats();
        }
      }
    } catch (e) {
      if (e.name === 'AbortError') stopped = true;
      else {
        state.messages.pop();
        state.messages.push({ role: 'error', content: String(e.message || e) });
      }
    } finally {
      state.controller = null;
      answer.meta = stats() + (stopped ? ' · stopped' : finish === 'length' ? ' · max tokens reached' : '');
      busy(false);
      save();
      render();
      $('input').focus();
    }
  }

  $('composer').addEventListener('submit', function (ev) {
    ev.preventDefault();
    var text = $('input').value.trim();
    if (!text || state.controller) return;
    $('input').value = '';
    send(text);
  });
  $('input').addEventListener('keydown', function (ev) {
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) { ev.preventDefault(); $('composer').requestSubmit(); }
  });
  $('stop').addEventListener('click', function () { if (state.controller) state.controller.abort(); });
  $('new-chat').addEventListener('click', function () {
    if (state.controller) state.controller.abort();
    state.messages = [];
    save();
    render();
  });
  ['system', 'temperature', 'max-tokens', 'api-key'].forEach(function (id) { $(id).addEventListener('change', save); });

  load();
  render();
  busy(false);
  fetch('/v1/models', { headers: headers() }).then(function (r) { return r.json(); }).then(function (j) {
    if (j.data && j.data[0]) { model = j.data[0].id; $('model').textContent = model; }
  }).catch(function () {});
})();
`;

export const PAGE_HTML = String.raw`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1, viewport-fit=cover">
<title>llamats chat</title>
<link rel="icon" href="data:,">
<style>${STYLE}</style>
</head>
<body>
<header><h1>llamats</h1><span id="model"></span><span id="stats" aria-live="polite"></span><button type="button" id="new-chat" class="secondary">New chat</button></header>
<details>
<summary>Settings</summary>
<div class="settings">
<label class="wide">System prompt<textarea id="system" rows="2" placeholder="You are a helpful assistant."></textarea></label>
<label>Temperature<input id="temperature" type="number" min="0" max="2" step="0.1" value="0.7"></label>
<label>Max tokens<input id="max-tokens" type="number" min="1" step="1" value="256"></label>
<label class="wide">API key (if the server has one)<input id="api-key" type="password" autocomplete="off"></label>
</div>
</details>
<main id="messages" aria-live="polite"></main>
<form id="composer">
<textarea id="input" placeholder="Message" aria-label="Message" autofocus></textarea>
<button type="submit" id="send">Send</button>
<button type="button" id="stop" hidden>Stop</button>
</form>
<script>${SCRIPT}</script>
</body>
</html>
`;

const hash = (s: string) => `'sha256-${createHash('sha256').update(s, 'utf8').digest('base64')}'`;

/** Only this page's own inline script and style, and requests to this server. */
export const PAGE_CSP = `default-src 'none'; script-src ${hash(SCRIPT)}; style-src ${hash(STYLE)}; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`;
