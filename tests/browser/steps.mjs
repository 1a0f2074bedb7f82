// steps.mjs - what the browser tests share: numbered steps (TAP-like
// "ok N - name" lines), checks that throw, and screenshots into artifacts.
// One test per node process, so one `progress` per test.
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
