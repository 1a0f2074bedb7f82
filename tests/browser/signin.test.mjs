// signin.test.mjs - the Function Runner page behind an API key, in Debian's
// headless Chromium.
//
//   FNRUN_URL=http://127.0.0.1:8480/ FNRUN_PAGE_KEY=fnr_... node tests/browser/signin.test.mjs
//
// The gateway at FNRUN_URL must have at least one key, FNRUN_PAGE_KEY a
// user key named "alice" (`fnrun keys create --scope user --name alice`),
// and "Create Image" at "Fast Preview" with a width param (over 256 px a
// thumbnail is made); tests/test_browser.c starts one. The page asks for a
// key, refuses a wrong one, signs in with the right one (an HttpOnly
// cookie), makes an image that shows through that cookie, signs out, and a
// 401 later brings the form back.
// Screenshots go to $FNRUN_ARTIFACTS (default tests/browser/artifacts).
// Exits 0 when every step passed, else 1 naming the step that failed.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { check, runBrowserTest, screenshot, step } from './steps.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const base = process.env.FNRUN_URL;
const key = process.env.FNRUN_PAGE_KEY;
const artifacts = process.env.FNRUN_ARTIFACTS || path.join(here, 'artifacts');
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const TOTAL_MS = 120000;
const JOB_MS = 45000; // one job, start of its model server included
const REFUSED = 'That key does not work. Check it, or ask your operator for a new one.';

if (!base || !key) {
  console.error('signin.test: set FNRUN_URL to the page and FNRUN_PAGE_KEY to a user key');
  process.exit(2);
}
if (!fs.existsSync(executablePath)) {
  console.error(`signin.test: no browser at ${executablePath}; run scripts/install-deps`);
  process.exit(2);
}

const origin = new URL(base).origin;
const shot = (page, name) => screenshot(artifacts, page, name);
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

// An image URL loaded by the page (with its cookie): its width, or 0.
async function imageWidth(page, url) {
  return page.evaluate(async (u) => {
    const img = new Image();
    img.src = u;
    try { await img.decode(); } catch (e) { return 0; }
    return img.naturalWidth;
  }, url);
}

// GET path from the page (its cookie, not the HTTP cache): {status, body}.
async function pageGet(page, p) {
  return page.evaluate(async (u) => {
    const r = await fetch(u, { headers: { Accept: 'application/json' }, cache: 'no-store' });
    let body = null;
    try { body = await r.json(); } catch (e) { body = null; }
    return { status: r.status, body };
  }, p);
}

async function sessionCookie(context) {
  return (await context.cookies(base)).find((c) => c.name === 'fnrun_key') || null;
}

async function expectSignInForm(page) {
  await page.waitForSelector('#signin:not([hidden])', { timeout: 10000 });
  check(await page.locator('#app').isHidden(), 'the page shows its form to someone not signed in');
  check(await page.locator('#who').isHidden(), 'the page says someone is signed in');
  const intro = await page.locator('#signin-intro').textContent();
  check(intro === 'This Function Runner needs a key. Paste the key your operator gave you.',
    `the sign-in says "${intro}"`);
  check((await page.locator('#signin-key').getAttribute('type')) === 'password',
    'the key field is not a password field');
}

async function signIn(page, text) {
  await page.getByLabel('Your key').fill(text);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

async function run(page, context) {
  const foreign = [];
  const problems = [];
  // The refusals a step means to cause; any other 4xx/5xx is a problem.
  let expected = () => false;
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
    if (bad && !expected(r)) problems.push(`${r.request().method()} ${r.url()} answered ${r.status()}`);
  });
  const is401 = (method, test) => (r) => r.status() === 401 && r.request().method() === method &&
    test(new URL(r.url()).pathname);

  await step('without a key the page asks for one, and asks nothing else', async () => {
    const res = await page.goto(base, { waitUntil: 'domcontentloaded' });
    check(res && res.status() === 200, `GET ${base} answered ${res ? res.status() : 'nothing'}`);
    await expectSignInForm(page);
    check((await page.locator('#jobs > li').count()) === 0, 'cards show before signing in');
    await shot(page, 'signin-01-form.png');
    // The API really is closed without the key (the page itself did not ask).
    expected = is401('GET', (p) => p === '/api/functions');
    const fns = await pageGet(page, '/api/functions');
    expected = () => false;
    check(fns.status === 401 && fns.body && fns.body.error && fns.body.error.code === 'UNAUTHORIZED',
      `GET /api/functions without a key answered ${fns.status}`);
    const s = await pageGet(page, '/api/session');
    check(s.status === 200 && s.body.keys_required === true && s.body.signed_in === false,
      `GET /api/session answered ${s.status} ${JSON.stringify(s.body)}`);
  });

  await step('an empty or wrong key is refused with a plain message', async () => {
    await page.getByRole('button', { name: 'Sign in' }).click();
    const err = page.locator('#signin-error');
    await err.waitFor({ state: 'visible', timeout: 5000 });
    check(/paste your key/i.test(await err.textContent()), `an empty key says "${await err.textContent()}"`);

    expected = is401('POST', (p) => p === '/api/session');
    await signIn(page, `fnr_${'0'.repeat(64)}`);
    await page.waitForFunction((want) => {
      const e = document.getElementById('signin-error');
      return !e.hidden && e.textContent === want;
    }, REFUSED, { timeout: 10000 });
    expected = () => false;
    check((await page.locator('#signin-key').getAttribute('aria-invalid')) === 'true',
      'the key field is not marked invalid');
    await expectSignInForm(page);
    check((await sessionCookie(context)) === null, 'a wrong key left a cookie');
    await shot(page, 'signin-02-refused.png');
  });

  await step('the right key signs in with an HttpOnly cookie', async () => {
    await signIn(page, key);
    await page.waitForSelector('#form:not([hidden])', { timeout: 15000 });
    check(await page.locator('#signin').isHidden(), 'the sign-in form stays');
    const who = (await page.locator('#who').innerText()).replace(/\s+/g, ' ').trim();
    check(who === 'Signed in as alice · Sign out', `the page says "${who}"`);
    check((await page.locator('#signin-key').inputValue()) === '', 'the key stays in its field');
    const c = await sessionCookie(context);
    check(c && c.value === key, 'no fnrun_key cookie');
    check(c.httpOnly === true, 'the cookie is not HttpOnly');
    check(c.sameSite === 'Strict', `the cookie is SameSite=${c.sameSite}`);
    check(!(await page.evaluate(() => document.cookie)).includes('fnrun_key'), 'scripts can read the key');
    const opts = await page.$$eval('#quality option', (os) => os.map((o) => o.textContent));
    check(opts.includes('Fast Preview · 1–2 s'), `quality options are ${JSON.stringify(opts)}`);
  });

  let id;
  let href;
  await step('Create Image runs to completion; its thumbnail and image load', async () => {
    await page.selectOption('#function', { label: 'Create Image' });
    const q = await page.$eval('#quality', (sel) =>
      [...sel.options].find((o) => o.textContent.startsWith('Fast Preview')).value);
    await page.selectOption('#quality', q);
    await page.fill('#param-width', '320'); // over 256 px: the server makes a thumbnail
    await page.getByLabel('Prompt').fill('a lighthouse behind a key');
    await page.getByRole('button', { name: 'Create' }).click();
    await page.waitForFunction(() => document.querySelectorAll('#jobs > li').length > 0, null,
      { timeout: 10000 });
    id = await firstCard(page).getAttribute('data-job-id');
    check(id, 'the new card has no job id');
    await waitCard(page, id, 'completed', JOB_MS);
    await waitThumbLoaded(page, id);
    const card = firstCard(page);
    href = await card.locator('.result a').first().getAttribute('href');
    const src = await card.locator('.result img').getAttribute('src');
    check(href && href.startsWith('/api/outputs/') && href.endsWith('.png'), `the image is ${href}`);
    check(src && src.startsWith('/api/outputs/') && src !== href, `the thumbnail is ${src} (image ${href})`);
    const tw = await card.locator('.result img').evaluate((img) => img.naturalWidth);
    check(tw > 0 && tw <= 256, `the thumbnail is ${tw} px wide`);
    const w = await imageWidth(page, href);
    check(w === 320, `the full image is ${w} px wide`);
    await shot(page, 'signin-03-done.png');
  });

  await step('after a reload it is still signed in, with its card', async () => {
    await page.reload({ waitUntil: 'domcontentloaded' });
    await waitCard(page, id, 'completed', 15000);
    await waitThumbLoaded(page, id);
    check(await page.locator('#who').isVisible(), 'no "Signed in as" after a reload');
    check(await page.locator('#signin').isHidden(), 'the sign-in form shows after a reload');
  });

  await step('sign out returns to the form; the image is closed again', async () => {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await expectSignInForm(page);
    check((await page.locator('#jobs > li').count()) === 0, 'cards stay after signing out');
    check((await sessionCookie(context)) === null, 'the cookie stays after signing out');
    const s = await pageGet(page, '/api/session');
    check(s.status === 200 && s.body.signed_in === false, `GET /api/session says ${JSON.stringify(s.body)}`);
    expected = is401('GET', (p) => p === href);
    const img = await pageGet(page, href);
    expected = () => false;
    check(img.status === 401, `the image without the cookie answered ${img.status}`);
    await shot(page, 'signin-04-signed-out.png');
  });

  await step('signing in again brings its card back', async () => {
    await signIn(page, key);
    await page.waitForSelector('#form:not([hidden])', { timeout: 15000 });
    await waitCard(page, id, 'completed', 15000);
    await waitThumbLoaded(page, id);
  });

  await step('a request answered 401 brings the form back', async () => {
    await context.clearCookies(); // as when the key is revoked
    expected = is401('POST', (p) => p === '/api/generate');
    await page.getByLabel('Prompt').fill('no longer signed in');
    await page.getByRole('button', { name: 'Create' }).click();
    await expectSignInForm(page);
    expected = () => false;
    check((await page.locator('#jobs > li').count()) === 0, 'cards stay after a 401');
    check(await page.locator('#signin-error').isHidden(), 'the form shows an error before any key');
  });

  await step('nothing from elsewhere, no script errors, no other refusals', async () => {
    check(foreign.length === 0, `requests left the server: ${foreign.join(' ')}`);
    check(problems.length === 0, problems.join('\n'));
    const text = await page.locator('body').innerText();
    check(!text.includes('fnr_'), 'the page shows a key');
  });
}

runBrowserTest('signin.test', run, {
  chromium, executablePath, artifacts, totalMs: TOTAL_MS, failureShot: 'signin-failure.png',
});
