#!/usr/bin/env node
// Opens the static catalog written by `strata docs` from the file system in
// headless Chromium, checks what a reader sees, and keeps a screenshot.
//
//   node docs.mjs SITE_DIR SCREENSHOT.png
//
// Fails on a page error, a console error, or a missing part: the lineage
// graph, the tables, and each table's columns with their origins.

import { chromium } from 'playwright-core';
import path from 'node:path';

const [site, shot] = process.argv.slice(2);
if (!site || !shot) {
  console.error('usage: node docs.mjs SITE_DIR SCREENSHOT.png');
  process.exit(2);
}
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox'],
});
const errors = [];
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(`console: ${m.text()}`); });
  await page.goto('file://' + path.resolve(site, 'index.html'));
  const title = await page.title();
  const svgNodes = await page.locator('svg a, svg rect').count();
  const derived = await page.locator('th', { hasText: 'derived from' }).count();
  const origin = await page.locator('td a[href^="#t-"] code').count();
  const box = await page.locator('svg').first().boundingBox();
  await page.screenshot({ path: shot, fullPage: true });
  const fail = (m) => { console.error(m); process.exitCode = 1; };
  if (!title.includes('data catalog')) fail(`title is ${title}`);
  if (svgNodes < 2) fail(`the lineage graph shows ${svgNodes} nodes`);
  if (!box || box.width < 100 || box.height < 40) fail(`the lineage graph is ${JSON.stringify(box)}`);
  if (derived < 1) fail('no "derived from" column');
  if (origin < 1) fail('no column origin links');
  for (const e of errors) fail(e);
  if (!process.exitCode) console.log(`ok: ${title}; ${svgNodes} graph nodes; ${origin} column origins; screenshot ${shot}`);
} finally {
  await browser.close();
}
