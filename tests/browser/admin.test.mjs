// admin.test.mjs - the operator page (/admin/) in Debian's headless Chromium.
//
//   FNRUN_URL=http://127.0.0.1:8480/ FNRUN_ADMIN_TOKEN=t node tests/browser/admin.test.mjs
//
// The gateway at FNRUN_URL runs with FNRUN_ADMIN_TOKEN and has "Create
// Image" at "low" (model img_low, completes) and "standard" (img_std, fails
// out of memory, retried one quality down), 2 GB each on a 3 GB budget, so
// that one evicts the other; tests/test_admin_page.c starts one. This
// script submits the jobs itself and watches the page draw them.
// Screenshots go to $FNRUN_ARTIFACTS (default tests/browser/artifacts).
// Exits 0 when every step passed, else 1 naming the step that failed.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { check, runBrowserTest, screenshot, step } from './steps.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const base = process.env.FNRUN_URL;
const token = process.env.FNRUN_ADMIN_TOKEN;
const artifacts = process.env.FNRUN_ARTIFACTS || path.join(here, 'artifacts');
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const TOTAL_MS = 150000;
const JOB_MS = 45000;

if (!base || !token) {
  console.error('admin.test: set FNRUN_URL and FNRUN_ADMIN_TOKEN');
  process.exit(2);
}
if (!fs.existsSync(executablePath)) {
  console.error(`admin.test: no browser at ${executablePath}; run scripts/install-deps`);
  process.exit(2);
}

const origin = new URL(base).origin;
const shot = (page, name) => screenshot(artifacts, page, name);

async function submit(quality) {
  const r = await fetch(new URL('/api/generate', base), {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ function: 'Create Image', quality, params: { prompt: 'a lighthouse' } }),
  });
  check(r.status === 202, `submit answered ${r.status}`);
  return (await r.json()).job_id;
}

async function finished(id) {
  const t0 = Date.now();
  for (;;) {
    const job = await (await fetch(new URL(`/api/jobs/${id}`, base))).json();
    if (['completed', 'failed', 'cancelled'].includes(job.status)) return job.status;
    check(Date.now() - t0 < JOB_MS, `job ${id} still ${job.status} after ${JOB_MS} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

// The legend labels of the chart in the element with data-chart=key.
async function legend(page, key) {
  return page.$$eval(`[data-chart="${key}"] .u-legend .u-series .u-label`, (els) => els.map((e) => e.textContent));
}

async function waitLegend(page, key, want) {
  await page.waitForFunction(([k, w]) => {
    const labels = [...document.querySelectorAll(`[data-chart="${k}"] .u-legend .u-series .u-label`)].map((e) => e.textContent);
    return w.every((x) => labels.includes(x));
  }, [key, want], { timeout: 20000 }).catch(async () => {
    throw new Error(`chart ${key}: want ${want.join(', ')}; has ${(await legend(page, key)).join(', ')}`);
  });
}

async function run(page) {
  const foreign = [];
  const problems = [];
  page.on('request', (req) => {
    const u = new URL(req.url());
    if (u.origin !== origin && u.protocol !== 'data:') foreign.push(req.url());
  });
  page.on('console', (msg) => { if (msg.type() === 'error') problems.push(`console: ${msg.text()}`); });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));

  await step('without the token the page is refused with a Basic challenge', async () => {
    const r = await fetch(new URL('/admin/', base));
    check(r.status === 401, `/admin/ answered ${r.status}`);
    check((r.headers.get('www-authenticate') || '').startsWith('Basic'), 'no Basic challenge');
    const m = await fetch(new URL('/metrics', base));
    check(m.status === 401, `/metrics answered ${m.status}`);
  });

  await step('with the token the page loads and polls', async () => {
    const r = await page.goto(new URL('/admin/', base).href);
    check(r.status() === 200, `/admin/ answered ${r.status()}`);
    await page.waitForFunction(() => window.__admin && window.__admin.scrapes >= 2, null, { timeout: 15000 });
    const s = await page.evaluate(() => window.__admin);
    check(s.errors === 0, `polls failed: ${s.lastError}`);
    check(await page.evaluate(() => typeof window.uPlot === 'function'), 'uPlot did not load');
    check((await page.locator('canvas').count()) >= 5, 'fewer than 5 charts drawn');
    await waitLegend(page, 'gpu', ['budget GPU 0', 'reserved GPU 0', 'measured GPU 0']);
    await shot(page, 'admin-01-loaded.png');
  });

  await step('jobs run: throughput, latency, runners and queue are drawn', async () => {
    for (let i = 0; i < 3; i++) check((await finished(await submit('low'))) === 'completed', 'a low job did not complete');
    const busy = [submit('low'), submit('low'), submit('low')];
    for (const id of await Promise.all(busy)) await finished(id);
    await waitLegend(page, 'rate', ['Create Image']);
    await waitLegend(page, 'latency', ['p50 Create Image', 'p95 Create Image']);
    await waitLegend(page, 'runners', ['img_low ready']);
    await waitLegend(page, 'queue', ['Create Image']);
    const rows = await page.$$eval('#models tbody tr td:first-child', (els) => els.map((e) => e.textContent));
    check(rows.includes('img_low') && rows.includes('img_std'), `models table: ${rows.join(', ')}`);
  });

  await step('an eviction and an out-of-memory retry show as operator events', async () => {
    check((await finished(await submit('standard'))) === 'completed', 'the standard job did not complete one quality down');
    await page.waitForFunction(() => {
      const kinds = [...document.querySelectorAll('#events tbody tr td:nth-child(2)')].map((e) => e.textContent);
      return kinds.includes('eviction') && kinds.includes('oom retry');
    }, null, { timeout: 15000 }).catch(async () => {
      const kinds = await page.$$eval('#events tbody tr td:nth-child(2)', (els) => els.map((e) => e.textContent));
      throw new Error(`events: ${kinds.join(', ')}`);
    });
    check(await page.locator('#events-empty').isHidden(), '"None yet." still shows');
    await waitLegend(page, 'runners', ['img_low ready']);
    await shot(page, 'admin-02-live.png');
  });

  await step('nothing from elsewhere, no script errors', async () => {
    check(foreign.length === 0, `requests left the server: ${foreign.join(' ')}`);
    check(problems.length === 0, problems.join('\n'));
  });
}

runBrowserTest('admin.test', run, {
  chromium, executablePath, artifacts, totalMs: TOTAL_MS, failureShot: 'admin-failure.png',
  context: { viewport: { width: 1280, height: 1000 }, httpCredentials: { username: 'operator', password: token } },
});
