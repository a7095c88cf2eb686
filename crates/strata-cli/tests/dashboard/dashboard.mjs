#!/usr/bin/env node
// End-to-end test of the Strata web dashboard in headless Chromium.
//
//   node dashboard.mjs BASE_URL TOKEN OUT_DIR
//
// BASE_URL is a running `strata serve` (or the mock API of
// crates/strata-server/assets/dashboard-dev), TOKEN an API token, OUT_DIR a
// folder for full-page screenshots of every page. Prints one line per step;
// exits non-zero with a clear message on the first failed assertion, uncaught
// page error or console error. With a `read` token it checks that the admin
// buttons are hidden and does not trigger a run.

import { chromium } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';

const [baseArg, token, outDir] = process.argv.slice(2);
if (!baseArg || !token || !outDir) {
  console.error('usage: node dashboard.mjs BASE_URL TOKEN OUT_DIR');
  process.exit(2);
}
const BASE = baseArg.replace(/\/+$/, '');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const WAIT = 20000;
const RUN_WAIT = 120000;

fs.mkdirSync(outDir, { recursive: true });

let passed = 0;
const t0 = Date.now();
const secs = () => ((Date.now() - t0) / 1000).toFixed(1).padStart(5);

function ok(step, detail = '') {
  passed += 1;
  console.log(`[${secs()}s] ok   ${step}${detail ? ` — ${detail}` : ''}`);
}

class StepFailure extends Error {}

function assert(cond, msg) {
  if (!cond) throw new StepFailure(msg);
}

async function apiGet(p) {
  let res;
  try {
    res = await fetch(`${BASE}${p}`, { headers: { Authorization: `Bearer ${token}` } });
  } catch (e) {
    throw new StepFailure(`cannot reach ${BASE}${p}: ${e.cause ? e.cause.message || e.cause.code : e.message}`);
  }
  const text = await res.text();
  if (!res.ok) throw new StepFailure(`GET ${p} answered ${res.status}: ${text.slice(0, 300)}`);
  return JSON.parse(text);
}

const pageErrors = [];
let armed = false; // console errors count once the token is stored

let browser;
let currentStep = 'start';
let failed = false;
try {
  if (!fs.existsSync(CHROMIUM)) {
    throw new StepFailure(`no Chromium at ${CHROMIUM}: install Debian's chromium package (apt-get install -y chromium)`);
  }
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  page.on('pageerror', (err) => pageErrors.push(`uncaught page error: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error' && armed) {
      const loc = msg.location();
      pageErrors.push(`console error: ${msg.text()}${loc && loc.url ? ` (${loc.url}:${loc.lineNumber})` : ''}`);
    }
  });
  page.on('response', (res) => {
    if (armed && res.status() >= 400) {
      console.log(`[${secs()}s]      note: ${res.request().method()} ${res.url()} answered ${res.status()}`);
    }
  });

  const checkErrors = () => {
    if (pageErrors.length) throw new StepFailure(pageErrors.join('\n'));
  };
  const step = async (name, fn) => {
    currentStep = name;
    const detail = await fn();
    checkErrors();
    ok(name, detail);
  };
  const shot = async (file) => {
    await page.evaluate(() => window.scrollTo(0, 0)); // the sticky header belongs at the top
    await page.waitForTimeout(150); // let the last layout settle
    await page.screenshot({ path: path.join(outDir, file), fullPage: true });
  };
  // Changes the hash and returns once the app has seen the change (it then
  // shows the new page's loading state, so no wait matches the old page).
  const visit = async (hash) => {
    await page.evaluate((h) => new Promise((resolve) => {
      if (location.hash === h) { resolve(); return; }
      window.addEventListener('hashchange', () => resolve(), { once: true });
      location.hash = h;
    }), hash);
  };

  // -- sign in
  const me = await (async () => {
    currentStep = 'API reachable';
    return apiGet('/api/me');
  })();
  const admin = me.scope === 'admin';
  await step('store the token', async () => {
    await page.goto(`${BASE}/`, { waitUntil: 'domcontentloaded' });
    // Without a token the app asks /api/me, gets 401 (which Chromium logs as a
    // console error, not counted) and shows its sign-in form: wait for that first.
    await page.waitForSelector('#signin-form, #user .user-name');
    await page.evaluate((tok) => localStorage.setItem('strata_token', tok), token);
    armed = true;
    await page.reload({ waitUntil: 'domcontentloaded' });
    await page.waitForSelector('#user .user-name');
    const shown = (await page.textContent('#user')).replace(/\s+/g, ' ');
    assert(shown.includes(me.name) && shown.includes(me.scope), `the header should show ${me.name} (${me.scope}), shows "${shown.trim()}"`);
    return `signed in as ${me.name} (${me.scope})`;
  });

  // -- overview
  await step('overview', async () => {
    await visit('#/');
    await page.waitForSelector('#tiles .tile');
    const tiles = await page.$$eval('#tiles .tile', (els) => els.map((e) => ({
      value: e.querySelector('.tile-value')?.textContent.trim(),
      label: e.querySelector('.tile-label')?.textContent.trim(),
    })));
    assert(tiles.length === 5, `expected 5 tiles, found ${tiles.length}`);
    for (const t of tiles) assert(/^[\d,]+$/.test(t.value || ''), `tile "${t.label}" shows "${t.value}", not a count`);
    const project = (await page.textContent('#project-name')).trim();
    assert(project.length > 0, 'the header shows no project name');
    await shot('overview.png');
    return `project ${project}; ${tiles.map((t) => `${t.label}=${t.value}`).join(', ')}`;
  });

  // -- lineage and a model page
  const models = await apiGet('/api/models');
  const names = models.map((m) => m.name);
  let table = names.includes('gold.daily_revenue') ? 'gold.daily_revenue'
    : (models.find((m) => m.layer === 'gold') || models[models.length - 1] || {}).name;
  await step('lineage', async () => {
    assert(names.length > 0, 'GET /api/models returned no table');
    await visit('#/lineage');
    await page.waitForSelector('#lineage .node');
    const shown = await page.$$eval('#lineage .node', (els) => els.map((e) => e.dataset.table));
    const graph = await apiGet('/api/lineage');
    assert(shown.length === graph.nodes.length, `expected ${graph.nodes.length} nodes (one per table of /api/lineage), found ${shown.length}`);
    assert(new Set(shown).size === shown.length, `a table has more than one node: ${shown.join(', ')}`);
    const missing = names.filter((n) => !shown.includes(n));
    assert(!missing.length, `no lineage node for ${missing.join(', ')} (listed by /api/models)`);
    const edges = await page.$$eval('#lineage path.edge', (els) => els.length);
    await shot('lineage.png');
    return `${shown.length} nodes, ${edges} edges`;
  });
  await step(`model page of ${table}`, async () => {
    await page.click(`.node[data-table="${table}"]`);
    await page.waitForFunction((t) => document.querySelector('#model-name')?.textContent.trim() === t, table);
    assert(decodeURIComponent(new URL(page.url()).hash) === `#/models/${table}`, `the URL should be #/models/${table}, is ${page.url()}`);
    await page.waitForSelector('#chart-rows svg, #chart-rows .empty');
    await page.waitForSelector('#chart-duration svg, #chart-duration .empty');
    await shot('model.png');
    return `#model-name reads ${table}`;
  });

  // -- runs
  await step('runs', async () => {
    await visit('#/runs');
    await page.waitForSelector('table.runs, #app .empty');
    const n = await page.$$eval('table.runs tbody tr', (els) => els.length);
    const btn = await page.$('#trigger-run');
    if (admin) assert(btn, 'an admin token should see the "Run now" button (#trigger-run)');
    else assert(!btn, 'a read token must not see the "Run now" button (#trigger-run)');
    await shot('runs.png');
    return `${n} runs listed; Run now ${btn ? 'shown' : 'hidden'}`;
  });

  // -- products
  await step('products', async () => {
    await visit('#/products');
    await page.waitForSelector('.product, #app .empty');
    const n = await page.$$eval('.product', (els) => els.length);
    await shot('products.png');
    return `${n} product cards`;
  });

  // -- explorer
  await step(`explorer preview of ${table}`, async () => {
    await visit(`#/explore/${table}`);
    await page.waitForSelector('#preview tbody tr');
    const rows = await page.$$eval('#preview tbody tr', (els) => els.length);
    const info = (await page.textContent('#page-info')).trim();
    return `${rows} rows shown (${info})`;
  });
  await step(`explorer slice of ${table}`, async () => {
    const first = await page.$eval('#preview thead th', (th) => th.firstChild.textContent.trim());
    assert(first, 'the preview has no column header');
    await page.fill('#s-by', first);
    await page.click('#slice-run');
    await page.waitForSelector('#slice-chart svg');
    const bars = await page.$$eval('#slice-chart svg rect', (els) => els.length);
    assert(bars > 0, 'the slice chart has no bars');
    await shot('explorer.png');
    return `by ${first}: ${bars} bars`;
  });

  // -- trigger a run and follow it
  if (admin) {
    let runId;
    await step('trigger a run', async () => {
      await visit('#/runs');
      await page.waitForSelector('#trigger-run');
      await page.click('#trigger-run');
      await page.waitForFunction(() => /^#\/runs\/.+/.test(location.hash));
      await page.waitForSelector('#run-status');
      runId = decodeURIComponent(new URL(page.url()).hash.replace('#/runs/', ''));
      return `run ${runId} started`;
    });
    await step('run succeeds', async () => {
      const deadline = Date.now() + RUN_WAIT;
      let status = '';
      let last = '';
      for (;;) {
        status = ((await page.textContent('#run-status').catch(() => '')) || '').trim();
        if (status !== last) {
          console.log(`[${secs()}s]      run ${runId}: ${status}`);
          last = status;
        }
        checkErrors();
        if (status === 'success') break;
        assert(status !== 'failed' && status !== 'interrupted', `run ${runId} ended ${status}`);
        assert(Date.now() < deadline, `run ${runId} still "${status}" after ${RUN_WAIT / 1000} s`);
        await page.waitForTimeout(500);
      }
      await page.waitForSelector('#gantt svg');
      const bars = await page.$$eval('#gantt svg rect.g-bar', (els) => els.length);
      assert(bars > 0, 'the timeline shows no task bar');
      await shot('run.png');
      return `#run-status reads success; ${bars} task bars`;
    });
  } else {
    await step('latest run page (read token: no trigger)', async () => {
      const runs = await apiGet('/api/runs?limit=1');
      if (!runs.length) {
        await visit('#/runs');
        await shot('run.png');
        return 'no run to show';
      }
      await visit(`#/runs/${encodeURIComponent(runs[0].run_id)}`);
      await page.waitForSelector('#run-status');
      assert(!(await page.$('#resume-run')), 'a read token must not see the "Resume" button (#resume-run)');
      await shot('run.png');
      return `run ${runs[0].run_id}: ${(await page.textContent('#run-status')).trim()}`;
    });
  }
  checkErrors();
} catch (e) {
  failed = true;
  const msg = e instanceof StepFailure ? e.message : (e && e.stack) || String(e);
  console.log(`[${secs()}s] FAIL ${currentStep}: ${msg}`);
} finally {
  if (browser) await browser.close().catch(() => {});
}
console.log(`dashboard: ${passed} passed, ${failed ? 1 : 0} failed`);
process.exit(failed ? 1 : 0);
