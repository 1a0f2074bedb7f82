// page.test.mjs - the Function Runner web page in Debian's headless Chromium.
//
//   FNRUN_URL=http://127.0.0.1:8480/ node tests/browser/page.test.mjs
//
// The gateway at FNRUN_URL must serve the page at / and have "Create Image"
// with the qualities "Fast Preview" (completes) and "Balanced" (its model
// fails with a CUDA out-of-memory error), and "Create Video" with "Fast
// Preview" (an MP4 with a poster); tests/test_browser.c starts one.
// Screenshots go to $FNRUN_ARTIFACTS (default tests/browser/artifacts).
// Exits 0 when every step passed, else 1 naming the step that failed.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { check, runBrowserTest, screenshot, step } from './steps.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const base = process.env.FNRUN_URL;
const artifacts = process.env.FNRUN_ARTIFACTS || path.join(here, 'artifacts');
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const TOTAL_MS = 150000;
const JOB_MS = 45000; // one job, start of its model server included

if (!base) {
  console.error('page.test: set FNRUN_URL to the page, e.g. http://127.0.0.1:8480/');
  process.exit(2);
}
if (!fs.existsSync(executablePath)) {
  console.error(`page.test: no browser at ${executablePath}; run scripts/install-deps`);
  process.exit(2);
}

const origin = new URL(base).origin;
const shot = (page, name) => screenshot(artifacts, page, name);

// Counts EventSource objects not yet closed, before the page's own script runs.
function countEventSources() {
  const Orig = window.EventSource;
  const stats = { opened: 0, open: 0, maxOpen: 0, urls: [] };
  window.__es = stats;
  window.EventSource = class extends Orig {
    constructor(url, init) {
      super(url, init);
      this.__counted = true;
      stats.opened++;
      stats.open++;
      stats.maxOpen = Math.max(stats.maxOpen, stats.open);
      stats.urls.push(String(url));
    }

    close() {
      if (this.__counted) {
        this.__counted = false;
        stats.open--;
      }
      super.close();
    }
  };
}

// The newest card, and a predicate on it evaluated in the page.
const firstCard = (page) => page.locator('#jobs > li').first();

async function waitCard(page, id, status, ms) {
  await page.waitForFunction(
    ([jid, st]) => {
      const li = document.querySelector(`#jobs > li[data-job-id="${jid}"]`);
      return li && li.dataset.status === st;
    },
    [id, status],
    { timeout: ms },
  );
}

async function waitThumbLoaded(page, id) {
  await page.waitForFunction(
    (jid) => {
      const img = document.querySelector(`#jobs > li[data-job-id="${jid}"] .result img`);
      return img && img.complete && img.naturalWidth > 0;
    },
    id,
    { timeout: JOB_MS },
  );
}

async function selectQuality(page, label) {
  const value = await page.$eval('#quality', (sel, want) => {
    const o = [...sel.options].find((x) => x.textContent.startsWith(want));
    return o ? o.value : null;
  }, label);
  check(value, `no quality option "${label}"`);
  await page.selectOption('#quality', value);
}

async function submit(page, quality, prompt, fn = 'Create Image') {
  const before = await page.locator('#jobs > li').count();
  await page.selectOption('#function', { label: fn });
  await selectQuality(page, quality);
  await page.getByLabel('Prompt').fill(prompt);
  await page.getByRole('button', { name: 'Create' }).click();
  await page.waitForFunction((n) => document.querySelectorAll('#jobs > li').length > n, before, {
    timeout: 10000,
  });
  return firstCard(page).getAttribute('data-job-id');
}

async function run(page, context) {
  const foreign = [];
  const problems = [];
  page.on('request', (r) => {
    const u = r.url();
    if (!u.startsWith('data:') && new URL(u).origin !== origin) foreign.push(u);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    // Failed loads are judged by their responses, below.
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource'))
      problems.push(`console: ${m.text()}`);
  });
  page.on('response', (r) => {
    const bad = r.status() >= 400 || r.status() === 0;
    // The one expected refusal: the form sent without a prompt.
    const expected = r.status() === 400 && r.request().method() === 'POST' && r.url().endsWith('/api/generate');
    if (bad && !expected) problems.push(`${r.request().method()} ${r.url()} answered ${r.status()}`);
  });
  await context.addInitScript(countEventSources);

  await step('the form is built from the catalog', async () => {
    const res = await page.goto(base, { waitUntil: 'domcontentloaded' });
    check(res && res.status() === 200,
      `GET ${base} answered ${res ? res.status() : 'nothing'}: does fnrun serve web/ at / ?`);
    await page.waitForSelector('#form:not([hidden])', { timeout: 15000 });
    const opts = await page.$$eval('#quality option', (os) => os.map((o) => o.textContent));
    check(opts.includes('Fast Preview · 1–2 s'), `quality options are ${JSON.stringify(opts)}`);
    check(opts.includes('Balanced · 2–5 s'), `quality options are ${JSON.stringify(opts)}`);
    const seed = page.locator('#param-seed');
    check((await seed.getAttribute('placeholder')) === 'random', 'the seed has no "random" placeholder');
    check((await seed.inputValue()) === '', 'the random seed is not empty');
    const width = page.locator('#param-width');
    check((await width.getAttribute('type')) === 'number', 'width is not a number input');
    check((await width.getAttribute('min')) === '16' && (await width.getAttribute('max')) === '512',
      'width lacks its range');
    check((await page.locator('#param-prompt').getAttribute('maxlength')) === '200',
      'the prompt lacks maxlength');
    check(await page.locator('#empty').isVisible(), 'the empty panel says nothing');
    // Without keys on the server: no sign-in, no "Signed in as".
    check(await page.locator('#signin').isHidden(), 'the page asks for a key');
    check(await page.locator('#who').isHidden(), 'the page says someone is signed in');
  });

  await step('a missing prompt is shown next to the prompt', async () => {
    await page.getByLabel('Prompt').fill('');
    await page.getByRole('button', { name: 'Create' }).click();
    const err = page.locator('#param-prompt-error');
    await err.waitFor({ state: 'visible', timeout: 5000 });
    check(/required/i.test(await err.textContent()), `prompt error says "${await err.textContent()}"`);
    check((await page.locator('#param-prompt').getAttribute('aria-invalid')) === 'true',
      'the prompt is not marked invalid');
    check((await page.locator('#jobs > li').count()) === 0, 'a bad request made a card');
  });

  let id;
  await step('submit Create Image at Fast Preview', async () => {
    id = await submit(page, 'Fast Preview', 'a lighthouse at dusk');
    check(id, 'the new card has no job id');
    const card = firstCard(page);
    check((await card.locator('.card-title').textContent()) === 'Create Image · Fast Preview',
      `card title is "${await card.locator('.card-title').textContent()}"`);
    await shot(page, '01-submitted.png');
  });

  await step('the card shows progress while it runs', async () => {
    const card = firstCard(page);
    try {
      await waitCard(page, id, 'running', JOB_MS);
      await page.waitForFunction(
        (jid) => document.querySelector(`#jobs > li[data-job-id="${jid}"] progress`).value > 0,
        id,
        { timeout: 5000 },
      );
      check(await card.getByRole('button', { name: 'Cancel' }).isVisible(), 'no Cancel on a live card');
      check((await card.locator('.card-msg').textContent()).length > 0, 'no message while running');
    } catch (e) {
      // A fast machine may finish first; done is checked next either way.
      if ((await card.getAttribute('data-status')) !== 'completed') throw e;
    }
    await shot(page, '02-in-progress.png');
  });

  await step('the card is done and shows a loaded thumbnail', async () => {
    await waitCard(page, id, 'completed', JOB_MS);
    await waitThumbLoaded(page, id);
    const card = firstCard(page);
    check((await card.locator('.badge').textContent()) === 'Done', 'the badge does not say Done');
    check(!(await card.getByRole('button', { name: 'Cancel' }).isVisible()), 'Cancel on a done card');
    const href = await card.locator('.result a').first().getAttribute('href');
    check(href && href.startsWith('/api/outputs/'), `the thumbnail links to ${href}`);
    await shot(page, '03-done.png');
  });

  await step('after a reload the card is still there and done', async () => {
    await page.reload({ waitUntil: 'domcontentloaded' });
    await waitCard(page, id, 'completed', 15000);
    await waitThumbLoaded(page, id);
    check(await page.locator('#empty').isHidden(), 'the panel claims to be empty');
    await shot(page, '04-reloaded.png');
  });

  await step('the panel collapses and opens from the keyboard', async () => {
    const toggle = page.locator('#panel-toggle');
    await toggle.focus();
    await page.keyboard.press('Enter');
    check((await toggle.getAttribute('aria-expanded')) === 'false', 'aria-expanded is not false');
    check(await page.locator('#panel-body').isHidden(), 'the panel did not collapse');
    await page.keyboard.press('Space');
    check((await toggle.getAttribute('aria-expanded')) === 'true', 'aria-expanded is not true');
    check(await page.locator('#panel-body').isVisible(), 'the panel did not open');
  });

  let oom;
  await step('out of memory: a friendly message and a lower-quality button', async () => {
    oom = await submit(page, 'Balanced', 'a storm at sea');
    await waitCard(page, oom, 'failed', JOB_MS);
    const card = firstCard(page);
    const msg = await card.locator('.error-msg').textContent();
    check(/needs more resources than are free/.test(msg), `error message is "${msg}"`);
    const sug = await card.locator('.error-suggestion').textContent();
    check(sug === 'Try Fast Preview quality', `suggestion is "${sug}"`);
    check(await card.getByRole('button', { name: 'Try Fast Preview quality' }).isVisible(),
      'no "Try Fast Preview quality" button');
    await shot(page, '05-out-of-memory.png');
  });

  await step('its button resubmits at Fast Preview and that job completes', async () => {
    const card = page.locator(`#jobs > li[data-job-id="${oom}"]`);
    await card.getByRole('button', { name: 'Try Fast Preview quality' }).click();
    await page.waitForFunction((jid) => {
      const li = document.querySelector('#jobs > li');
      return li && li.dataset.jobId !== jid;
    }, oom, { timeout: 10000 });
    const again = await firstCard(page).getAttribute('data-job-id');
    check((await firstCard(page).locator('.card-title').textContent()) === 'Create Image · Fast Preview',
      'the new card is not at Fast Preview');
    check((await firstCard(page).locator('.card-input').textContent()).includes('a storm at sea'),
      'the new job lost the prompt');
    await waitCard(page, again, 'completed', JOB_MS);
    await waitThumbLoaded(page, again);
    await shot(page, '06-lower-quality-done.png');
  });

  await step('Create Video: the card plays its video, with the poster first', async () => {
    const vid = await submit(page, 'Fast Preview', 'a fox in the snow', 'Create Video');
    check(vid, 'the video card has no job id');
    await waitCard(page, vid, 'completed', JOB_MS);
    const video = page.locator(`#jobs > li[data-job-id="${vid}"] .result video`);
    await video.waitFor({ state: 'visible', timeout: 5000 });
    const poster = await video.getAttribute('poster');
    check(poster && poster.startsWith('/api/outputs/') && poster.endsWith('.png'), `the poster is ${poster}`);
    const src = await video.getAttribute('src');
    check(src && src.startsWith('/api/outputs/') && src.endsWith('.mp4'), `the video is ${src}`);
    const posterOk = await page.evaluate(async (u) => {
      const img = new Image();
      img.src = u;
      try { await img.decode(); } catch (e) { return false; }
      return img.naturalWidth > 0;
    }, poster);
    check(posterOk, 'the poster does not load as an image');
    await shot(page, '07-video-poster.png');
    // Muted playback is allowed without a gesture; it must really play.
    const played = await video.evaluate(async (v) => {
      v.muted = true;
      const t0 = v.currentTime;
      try { await v.play(); } catch (e) { return { err: `play(): ${e.message}` }; }
      const deadline = Date.now() + 10000;
      while (Date.now() < deadline && !(v.readyState >= 2 && v.currentTime > t0 + 0.2) && !v.error)
        await new Promise((r) => setTimeout(r, 50));
      v.pause();
      return { readyState: v.readyState, currentTime: v.currentTime, t0,
        err: v.error ? `MediaError ${v.error.code}: ${v.error.message}` : null,
        width: v.videoWidth, height: v.videoHeight };
    });
    check(!played.err, played.err);
    check(played.readyState >= 2, `readyState is ${played.readyState}`);
    check(played.currentTime > played.t0, `currentTime did not advance (${played.currentTime})`);
    check(played.width === 192 && played.height === 108, `the video is ${played.width}x${played.height}`);
    await shot(page, '08-video-played.png');
  });

  await step('one event stream at a time, none once nothing is live', async () => {
    await page.waitForFunction(() => window.__es && window.__es.open === 0, null, { timeout: 5000 });
    const es = await page.evaluate(() => window.__es);
    check(es.maxOpen <= 1, `${es.maxOpen} event streams were open at once`);
    check(es.urls.every((u) => u.startsWith('/api/events?jobs=')), `streams: ${es.urls.join(' ')}`);
  });

  await step('nothing from elsewhere, no script errors, no model names', async () => {
    check(foreign.length === 0, `requests left the server: ${foreign.join(' ')}`);
    check(problems.length === 0, problems.join('\n'));
    const text = await page.locator('body').innerText();
    for (const word of ['img_low', 'img_std', 'fnrun-worker', 'CUDA', 'SimSampler'])
      check(!text.includes(word), `the page shows "${word}"`);
  });
}

runBrowserTest('page.test', run, {
  chromium, executablePath, artifacts, totalMs: TOTAL_MS, failureShot: 'failure.png',
});
