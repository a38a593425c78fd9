/**
 * The chat page end to end, in headless Chromium (Debian's /usr/bin/chromium driven by
 * playwright-core) against the real `llamats serve` with stories260K: send a message, see the
 * answer stream in, press stop mid-stream, reload (the conversation and settings stay), chat on.
 * The page must make no request outside this server and raise no errors (its CSP included).
 * A phone-sized screenshot is saved as a test artifact: dist/test-artifacts/web-chat.png (or
 * under LLAMATS_ARTIFACTS).
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { ROOT, shared, tempDir } from './helpers.js';
import { startServe } from './server-helpers.js';

const CHROMIUM = '/usr/bin/chromium';

test('chat page in headless Chromium: stream, stop, reload, continue', { timeout: 90_000 }, async (t) => {
  const ckpt = shared(t, 'models/stories260K.bin');
  const tok = shared(t, 'models/tok512.bin');
  if (!ckpt || !tok) return;
  if (!fs.existsSync(CHROMIUM)) {
    if (process.env.CI === 'true') throw new Error(`${CHROMIUM} is missing; .ci/run installs Debian's chromium`);
    t.skip(`${CHROMIUM} is missing (apt-get install chromium)`);
    return;
  }
  const { chromium } = await import('playwright-core');
  const srv = await startServe(t, [ckpt, '-z', tok]);
  const context = await chromium.launchPersistentContext(tempDir(t), {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 390, height: 780 },
    deviceScaleFactor: 2,
    isMobile: true,
    hasTouch: true,
  });
  t.after(() => context.close());
  const page = context.pages()[0] ?? (await context.newPage());
  const outside: string[] = [];
  const problems: string[] = [];
  page.on('request', (r) => {
    if (!r.url().startsWith(srv.url)) outside.push(r.url());
  });
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(m.text());
  });
  page.on('pageerror', (e) => problems.push(e.message));

  await page.goto(srv.url);
  await page.locator('#model', { hasText: 'stories260K' }).waitFor({ timeout: 10_000 });
  await page.locator('summary').click();
  await page.fill('#system', 'You tell short stories.');
  await page.fill('#temperature', '0.8');
  await page.fill('#max-tokens', '400');
  await page.locator('#max-tokens').dispatchEvent('change');

  // a slow network, so that the answer visibly streams and can be stopped in the middle
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 20, downloadThroughput: 3000, uploadThroughput: -1 });

  await page.fill('#input', 'Tell me about a cat.');
  await page.keyboard.press('Enter');
  await page.locator('#stop').waitFor({ state: 'visible' });
  const answer = page.locator('.msg.assistant .text').last();
  const seen = new Set<number>();
  const deadline = Date.now() + 20_000;
  while (seen.size < 3 && Date.now() < deadline) {
    const n = (await answer.textContent())!.length;
    if (n > 0) seen.add(n);
    await page.waitForTimeout(50);
  }
  assert.ok(seen.size >= 3, `the answer grows as tokens arrive (lengths seen: ${[...seen].join(', ')})`);
  await page.click('#stop');
  await page.locator('#send').waitFor({ state: 'visible' });
  assert.equal(await page.locator('#stop').isHidden(), true);
  const stopped = page.locator('.msg.assistant').last();
  assert.match((await stopped.locator('.meta').textContent())!, /stopped/);
  const partial = (await stopped.locator('.text').textContent())!;
  assert.ok(partial.length > 0);
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });

  // reload: the conversation and the settings are kept in the page
  await page.reload();
  await page.locator('#model', { hasText: 'stories260K' }).waitFor();
  assert.equal(await page.locator('.msg').count(), 2);
  assert.equal(await page.locator('.msg.user .text').textContent(), 'Tell me about a cat.');
  assert.equal(await page.locator('.msg.assistant .text').textContent(), partial);
  assert.equal(await page.inputValue('#system'), 'You tell short stories.');

  // and the conversation goes on: a whole answer, with its tok/s
  await page.fill('#input', 'And then?');
  await page.locator('#send').click();
  await page.locator('.msg.assistant').nth(1).locator('.meta', { hasText: /tokens/ }).waitFor({ timeout: 20_000 });
  await page.locator('#send').waitFor({ state: 'visible' });
  assert.equal(await page.locator('.msg').count(), 4);
  assert.ok((await page.locator('.msg.assistant .text').nth(1).textContent())!.length > 0);
  assert.match((await page.locator('.msg.assistant .meta').nth(1).textContent())!, /\d+ tokens · [\d.]+ tok\/s/);
  assert.match((await page.textContent('#stats'))!, /tok\/s/);

  const dir = process.env.LLAMATS_ARTIFACTS ?? path.join(ROOT, 'dist/test-artifacts');
  fs.mkdirSync(dir, { recursive: true });
  const shot = path.join(dir, 'web-chat.png');
  await page.screenshot({ path: shot, fullPage: false });
  t.diagnostic(`screenshot: ${shot}`);

  // "New chat" clears it
  await page.click('#new-chat');
  assert.equal(await page.locator('.msg').count(), 0);

  assert.deepEqual(outside, [], 'no request leaves the server');
  assert.deepEqual(problems, [], 'no console errors');
});
