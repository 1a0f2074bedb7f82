// steps.mjs - what the browser tests share: numbered steps (TAP-like
// "ok N - name" lines), checks that throw, screenshots into artifacts, and
// the run of one test in a fresh headless Chromium (runBrowserTest).
// One test per node process, so one `progress` per test.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const progress = { step: 'start', passed: 0 };

export async function step(name, fn) {
  progress.step = name;
  const t0 = Date.now();
  await fn();
  progress.passed++;
  console.log(`ok ${progress.passed} - ${name} (${Date.now() - t0} ms)`);
}

export function check(cond, what) {
  if (!cond) throw new Error(what);
}

/* A full-page screenshot of page as artifacts/name. */
export async function screenshot(artifacts, page, name) {
  const file = path.join(artifacts, name);
  await page.screenshot({ path: file, fullPage: true });
  console.log(`   screenshot ${file}`);
}

/*
 * Runs one browser test: a fresh Chromium profile (headless, no sandbox,
 * no GPU), run(page, context) within totalMs, a screenshot named
 * failureShot when a step fails, the profile removed, and the process's
 * exit status: 0 when every step passed. options.context adds to the
 * browser context's options (a viewport, HTTP credentials).
 */
export async function runBrowserTest(name, run, { chromium, executablePath, artifacts,
  totalMs, failureShot, context: extra = {} }) {
  fs.mkdirSync(artifacts, { recursive: true });
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'fnrun-chromium-'));
  const timer = setTimeout(() => {
    console.error(`${name}: FAILED: timed out after ${totalMs} ms in step "${progress.step}"`);
    process.exit(1);
  }, totalMs);
  let context;
  let page;
  let failed = false;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
        '--disable-component-update', '--no-first-run'],
      viewport: { width: 1280, height: 860 },
      ...extra,
    });
    page = context.pages()[0] || (await context.newPage());
    await run(page, context);
  } catch (e) {
    failed = true;
    console.error(`${name}: FAILED in step "${progress.step}": ${e.message.split('\n')[0]}`);
    if (page) await screenshot(artifacts, page, failureShot).catch(() => {});
  } finally {
    if (context) await context.close().catch(() => {});
    fs.rmSync(profile, { recursive: true, force: true });
    clearTimeout(timer);
  }
  console.log(failed ? `${name}: ${progress.passed} steps passed, then one failed`
    : `${name}: all ${progress.passed} steps passed`);
  process.exit(failed ? 1 : 0);
}
