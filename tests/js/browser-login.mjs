#!/usr/bin/env node
// Drives a real headless Chromium (Debian's /usr/bin/chromium through playwright-core; no
// browser is ever downloaded) through an OAuth authorization flow and reports where the browser
// was finally sent back to the client.
//
// CLI (used by the Rust end-to-end tests and by the Python SDK driver):
//
//   node browser-login.mjs --url AUTHORIZATION_URL [--username alice] [--password password]
//        [--deny] [--expect-redirect-prefix URL] [--screenshot-dir DIR]
//        [--screenshot KIND=FILE.png]... [--timeout-ms 60000] [--bypass-csp] [--deliver]
//
//   The authorization URL may also be given as the first positional argument. Without
//   --expect-redirect-prefix, the `redirect_uri` query parameter of the authorization URL is
//   used. On success it prints one JSON line `{"url": "<final redirect URL>", "pages": [...]}`
//   on stdout and exits 0; on failure it prints a message on stderr, saves error.png (into
//   --screenshot-dir, or a fresh temporary folder whose path is printed) and exits 1.
//
// --bypass-csp is for diagnosis only: it hides Content-Security-Policy mistakes of the pages
// (such as a `form-action 'self'` that forbids the redirect to TaskManager after consent), which
// the browser console, printed on failure, otherwise names.
//
// Module use (mcp-client.mjs): `import { browserLogin } from './browser-login.mjs'`.
//
// Pages it knows how to get through, whatever order they come in:
//   consent     our auth server's consent page (/oauth/consent): a form with
//               `button[name=decision][value=approve|deny]`
//   tm-login    TaskManager's (or the mock's) login page: inputs `username`, `password`, submit
//   tm-consent  TaskManager's consent page: `button[value=approve]` / `button[name=decision]`
//   op-login    oidc-provider's development login page: inputs `login`, `password`
//   op-consent  oidc-provider's development consent page: hidden `prompt=consent`, "Continue"
// The flow ends when the browser is sent to a URL starting with the expected prefix. By
// default that request is intercepted and never reaches the network, so nothing needs to listen
// there. With --deliver (module: `deliver: true`) it goes through to the client's real loopback
// listener, as in a person's browser, and the listener must answer 2xx; the result then also
// carries `delivered: <status>`.
// Requests to anything but loopback hosts are aborted (this machine has no other network).
//
// Environment: E2E_CHROMIUM (default /usr/bin/chromium).

import { mkdtempSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';
import { forEachFlag } from './cli.mjs';

/** The flags NOTES.md prescribes: without the background-networking ones Chromium keeps trying
 * to reach outside hosts this network refuses. Playwright itself adds --headless and a fresh
 * temporary --user-data-dir for every launch(). */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
];

export function chromiumPath() {
  return process.env.E2E_CHROMIUM || '/usr/bin/chromium';
}

/** Launches Debian's chromium headless with the required flags. */
export async function launchChromium() {
  return chromium.launch({
    executablePath: chromiumPath(),
    headless: true,
    chromiumSandbox: false,
    args: CHROMIUM_ARGS,
    timeout: 30_000,
  });
}

function isLoopbackHost(hostname) {
  const h = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h);
}

class LoginError extends Error {}

/**
 * Runs the browser through the authorization flow.
 * @returns {Promise<{url: string, pages: string[], screenshots: string[]}>}
 */
export async function browserLogin({
  url,
  username = 'alice',
  password = 'password',
  deny = false,
  expectRedirectPrefix,
  screenshotDir,
  screenshots = {}, // kind -> file path
  timeoutMs = 60_000,
  bypassCsp = false, // diagnosis only: hides Content-Security-Policy bugs of the pages
  deliver = false, // let the final redirect reach the client's loopback listener
  log = (msg) => process.stderr.write(`[browser-login] ${msg}\n`),
} = {}) {
  if (!url) throw new LoginError('no authorization URL given');
  let prefix = expectRedirectPrefix;
  if (!prefix) {
    prefix = new URL(url).searchParams.get('redirect_uri');
    if (!prefix) throw new LoginError('no --expect-redirect-prefix and no redirect_uri in the URL');
  }
  if (screenshotDir) mkdirSync(screenshotDir, { recursive: true });

  const started = Date.now();
  const remaining = () => Math.max(0, timeoutMs - (Date.now() - started));
  const pages = [];
  const saved = [];
  const consoleErrors = [];
  let finalUrl;
  let resolveDone;
  const done = new Promise((resolve) => { resolveDone = resolve; });
  const finish = (u) => {
    if (finalUrl === undefined) {
      finalUrl = u;
      resolveDone(u);
    }
  };

  const browser = await launchChromium();
  let page;
  let overall;
  try {
    const context = await browser.newContext({ ignoreHTTPSErrors: false, bypassCSP: bypassCsp });
    page = await context.newPage();
    // What the page's console says (a CSP violation, a script error) explains a stuck flow.
    page.on('console', (msg) => {
      if (msg.type() === 'error' || msg.type() === 'warning') consoleErrors.push(msg.text().slice(0, 500));
    });
    page.on('pageerror', (e) => consoleErrors.push(`page error: ${e.message}`.slice(0, 500)));
    page.setDefaultTimeout(Math.min(15_000, timeoutMs));
    page.setDefaultNavigationTimeout(Math.min(20_000, timeoutMs));

    // Catch the final redirect, whether or not anything listens there.
    page.on('request', (req) => {
      if (req.url().startsWith(prefix) && req.frame() === page.mainFrame()) finish(req.url());
    });
    await context.route('**/*', async (route) => {
      const req = route.request();
      const u = req.url();
      if (u.startsWith(prefix)) {
        finish(u);
        if (deliver) {
          await route.continue().catch(() => {});
        } else {
          await route.fulfill({ status: 200, contentType: 'text/plain', body: 'redirect captured by browser-login' }).catch(() => {});
        }
        return;
      }
      let host;
      try { host = new URL(u).hostname; } catch { host = ''; }
      if ((u.startsWith('http:') || u.startsWith('https:')) && !isLoopbackHost(host)) {
        await route.abort('blockedbyclient').catch(() => {});
        return;
      }
      await route.continue().catch(() => {});
    });

    // With `deliver`, the listener's answer to the redirect (undefined if the request fails).
    let resolveDelivered;
    const delivered = new Promise((resolve) => { resolveDelivered = resolve; });
    const isCallback = (req) => req.url().startsWith(prefix) && req.frame() === page.mainFrame();
    page.on('response', (r) => { if (isCallback(r.request())) resolveDelivered(r); });
    page.on('requestfailed', (req) => { if (isCallback(req)) resolveDelivered(undefined); });

    let navCount = 0;
    page.on('framenavigated', (f) => { if (f === page.mainFrame()) navCount += 1; });

    const shoot = async (kind) => {
      const targets = [];
      if (screenshotDir) targets.push(join(screenshotDir, `${kind}.png`));
      if (screenshots[kind]) targets.push(screenshots[kind]);
      for (const file of targets) {
        try {
          mkdirSync(dirname(file), { recursive: true });
          await page.screenshot({ path: file, fullPage: true, timeout: 5_000 });
          saved.push(file);
        } catch (e) {
          log(`screenshot ${file} failed: ${e.message}`);
        }
      }
    };

    const classify = async () => {
      const has = async (sel) => (await page.locator(sel).count()) > 0;
      const path = (() => { try { return new URL(page.url()).pathname; } catch { return ''; } })();
      if (await has('button[name=decision][value=approve], button[name=decision][value=deny]')) {
        return path.includes('/oauth/consent') || path.startsWith('/consent') ? 'consent' : 'tm-consent';
      }
      if (await has('input[name=prompt][value=consent]')) return 'op-consent';
      if (await has('input[name=login]') && await has('input[type=password], input[name=password]')) return 'op-login';
      if (await has('input[name=username]') && await has('input[name=password]')) return 'tm-login';
      if (await has('button[value=approve], button[value=deny]')) return 'tm-consent';
      return 'unknown';
    };

    const waitForProgress = async (before, ms) => {
      const deadline = Date.now() + Math.min(ms, remaining());
      const errorsBefore = consoleErrors.length;
      while (finalUrl === undefined && navCount === before && Date.now() < deadline) {
        // A Content-Security-Policy refusal never turns into a navigation: stop waiting at once.
        if (consoleErrors.slice(errorsBefore).some((m) => m.includes('Content Security Policy'))) {
          await new Promise((r) => setTimeout(r, 300)); // let a racing navigation show up
          if (navCount === before && finalUrl === undefined) return false;
        }
        await Promise.race([done, new Promise((r) => setTimeout(r, 100))]);
      }
      if (finalUrl === undefined && navCount !== before) {
        await page.waitForLoadState('domcontentloaded', { timeout: Math.max(1, Math.min(15_000, remaining())) }).catch(() => {});
      }
      return finalUrl !== undefined || navCount !== before;
    };

    const timeout = new Promise((_, reject) => {
      overall = setTimeout(() => reject(new LoginError(`timed out after ${timeoutMs} ms (pages seen: ${pages.join(' -> ') || 'none'}; at ${page?.url()})`)), timeoutMs);
    });

    const flow = (async () => {
      log(`opening ${url}`);
      const before = navCount;
      const gotoResult = page.goto(url, { waitUntil: 'domcontentloaded' }).catch((e) => {
        if (finalUrl === undefined) throw e;
      });
      await Promise.race([done, gotoResult]);
      if (finalUrl === undefined) await waitForProgress(before, 1_000);

      const visits = {};
      let decided = false;
      while (finalUrl === undefined) {
        const kind = await classify();
        pages.push(kind);
        visits[kind] = (visits[kind] || 0) + 1;
        log(`page ${kind}: ${page.url()}`);
        await shoot(kind);
        if (kind === 'unknown') {
          // Maybe a page that redirects by itself (meta refresh, script); give it a moment.
          const n = navCount;
          if (visits.unknown <= 3 && await waitForProgress(n, 2_000)) continue;
          const text = (await page.locator('body').innerText({ timeout: 2_000 }).catch(() => '')).trim().slice(0, 800);
          throw new LoginError(`stuck on a page it does not know: ${page.url()}\n--- page text ---\n${text}`);
        }
        if (visits[kind] > 3) {
          const text = (await page.locator('body').innerText({ timeout: 2_000 }).catch(() => '')).trim().slice(0, 800);
          throw new LoginError(`page ${kind} came back ${visits[kind]} times (rejected credentials?): ${page.url()}\n--- page text ---\n${text}`);
        }
        const n = navCount;
        switch (kind) {
          case 'consent':
          case 'tm-consent': {
            const value = deny && !decided ? 'deny' : 'approve';
            decided = true;
            let btn = page.locator(`button[name=decision][value=${value}]`);
            if ((await btn.count()) === 0) btn = page.locator(`button[value=${value}], input[type=submit][value=${value}]`);
            if ((await btn.count()) === 0 && value === 'approve') btn = page.locator('button[name=decision]').first();
            await btn.first().click();
            break;
          }
          case 'tm-login':
            await page.fill('input[name=username]', username);
            await page.fill('input[name=password]', password);
            await page.locator('form:has(input[name=password]) [type=submit], form:has(input[name=password]) button').first().click();
            break;
          case 'op-login':
            await page.fill('input[name=login]', username);
            await page.fill('input[name=password]', password);
            await page.locator('form:has(input[name=login]) [type=submit]').first().click();
            break;
          case 'op-consent': {
            if (deny && !decided) {
              decided = true;
              const abort = page.locator('a[href*="/abort"]');
              if ((await abort.count()) > 0) {
                await abort.first().click();
                break;
              }
            }
            decided = true;
            await page.locator('form:has(input[name=prompt][value=consent]) [type=submit]').first().click();
            break;
          }
          default:
            break;
        }
        if (!(await waitForProgress(n, 20_000))) {
          throw new LoginError(`nothing happened after acting on page ${kind} at ${page.url()}`);
        }
      }
    })();

    await Promise.race([flow, timeout, done]);
    flow.catch(() => {}); // finished via `done`; later errors of the page do not matter
    log(`redirected to ${finalUrl}`);
    if (deliver) {
      const response = await Promise.race([
        delivered,
        new Promise((resolve) => { setTimeout(() => resolve(undefined), Math.min(15_000, Math.max(1_000, remaining()))); }),
      ]);
      if (!response || response.status() < 200 || response.status() > 299) {
        throw new LoginError(`the client's loopback listener at ${prefix} did not answer the redirect (${response ? `HTTP ${response.status()}` : 'no answer'})`);
      }
      log(`delivered to the client's listener: HTTP ${response.status()}`);
      return { url: finalUrl, pages, screenshots: saved, delivered: response.status() };
    }
    return { url: finalUrl, pages, screenshots: saved };
  } catch (err) {
    let shot;
    try {
      const dir = screenshotDir || mkdtempSync(join(tmpdir(), 'browser-login-'));
      shot = join(dir, 'error.png');
      if (page) await page.screenshot({ path: shot, fullPage: true, timeout: 5_000 });
    } catch {
      shot = undefined;
    }
    const e = err instanceof LoginError ? err : new LoginError(err?.message || String(err));
    const consoleText = consoleErrors.filter((m) => !/ERR_BLOCKED_BY_CLIENT|net::ERR_FAILED/.test(m)).slice(-5);
    e.message = `${e.message}${consoleText.length ? `\n--- browser console ---\n${consoleText.join('\n')}` : ''}${shot ? `\nscreenshot: ${shot}` : ''}`;
    e.pages = pages;
    throw e;
  } finally {
    clearTimeout(overall);
    await browser.close().catch(() => {});
  }
}

function parseArgs(argv) {
  const opts = { screenshots: {} };
  forEachFlag(argv, (flag, value, a) => {
    switch (flag) {
      case '--url': opts.url = value(); break;
      case '--username': opts.username = value(); break;
      case '--password': opts.password = value(); break;
      case '--deny': opts.deny = true; break;
      case '--expect-redirect-prefix': opts.expectRedirectPrefix = value(); break;
      case '--screenshot-dir': opts.screenshotDir = value(); break;
      case '--screenshot': {
        const v = value();
        const eq = v.indexOf('=');
        if (eq < 1) throw new LoginError('--screenshot wants KIND=FILE.png');
        opts.screenshots[v.slice(0, eq)] = v.slice(eq + 1);
        break;
      }
      case '--timeout-ms': opts.timeoutMs = Number(value()); break;
      case '--bypass-csp': opts.bypassCsp = true; break;
      case '--deliver': opts.deliver = true; break;
      case '--help': case '-h':
        process.stdout.write('usage: browser-login.mjs --url URL [--username U] [--password P] [--deny] [--expect-redirect-prefix URL] [--screenshot-dir DIR] [--screenshot KIND=FILE] [--timeout-ms N] [--bypass-csp] [--deliver]\n');
        process.exit(0);
        break;
      default:
        if (!a.startsWith('--') && !opts.url) opts.url = a;
        else throw new LoginError(`unknown argument ${a}`);
    }
  }, (m) => new LoginError(m));
  return opts;
}

async function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
    // A hard stop even if the browser itself hangs on close.
    const hard = setTimeout(() => {
      process.stderr.write('browser-login: hard timeout\n');
      process.exit(1);
    }, (opts.timeoutMs || 60_000) + 15_000);
    hard.unref();
    const result = await browserLogin(opts);
    process.stdout.write(`${JSON.stringify({ url: result.url, pages: result.pages })}\n`);
    process.exit(0);
  } catch (e) {
    process.stderr.write(`browser-login failed: ${e.message}\n`);
    process.exit(1);
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] || '').href) {
  main();
}
