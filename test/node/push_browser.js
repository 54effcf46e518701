// SPDX-License-Identifier: BSD-2-Clause
// push_browser.js: Debian's Chromium, headless through playwright-core, against the demo for
// test_demo_push:
//   node push_browser.js BASE CHANNEL N [SCREENSHOT.png]
// 1. opens BASE/ (the demo's page): waits for two samples of the stats channel and checks that
//    every plot has points; publishes with the page's form and sees it in the page's subscriber
//    pane;
// 2. in that page, the browser's own EventSource (BASE/ev/CHANNEL, reconnecting by itself with
//    Last-Event-ID) and WebSocket (BASE/ws/CHANNEL, frames carry ~position~, reconnected with
//    ?tag=) subscribe; prints "open" when both are open, then waits for "m1" .. "mN", each once
//    and in order (the test publishes them and reloads the server meanwhile), and prints
//    "done es R" and "done ws R" (R reconnections).
// Exits 0 when all went as expected, 1 ("FAIL ...") otherwise.
'use strict';
const { chromium } = require('playwright-core');
const fs = require('fs');
const os = require('os');
const path = require('path');

const [base, channel, nstr, shot] = process.argv.slice(2);
const N = Number(nstr);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'shk-chromium-'));
let ctx = null;
const finish = async (code, msg) => {
  if (msg) console.log(msg);
  if (ctx) await ctx.close().catch(() => {});
  fs.rmSync(dir, { recursive: true, force: true });
  process.exit(code);
};
const fail = (msg) => finish(1, 'FAIL ' + msg);
setTimeout(() => fail('timed out'), Number(process.env.PUSH_CLIENT_TIMEOUT_MS || 90000));

async function until(page, fn, arg, what, ms = 30000) {
  try {
    await page.waitForFunction(fn, arg, { timeout: ms, polling: 50 });
  } catch (e) {
    await fail('waiting for ' + what + ': ' + e.message.split('\n')[0]);
  }
}

(async () => {
  ctx = await chromium.launchPersistentContext(dir, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const page = await ctx.newPage();
  page.on('pageerror', (e) => fail('page error: ' + e.message));
  const resp = await page.goto(base + '/');
  if (!resp || resp.status() !== 200) return fail('GET / answered ' + (resp && resp.status()));

  // 1. the page: live plots and the form
  await until(page, () => window.shk && window.shk.samples >= 2, null, 'two stats samples');
  const empty = await page.evaluate(() =>
    [...document.querySelectorAll('#charts polyline')].filter((p) => !p.getAttribute('points')).length);
  const plots = await page.evaluate(() => document.querySelectorAll('#charts polyline').length);
  if (plots !== 6 || empty) return fail(plots + ' plots, ' + empty + ' without points');
  console.log('page stats ' + (await page.evaluate(() => window.shk.samples)) + ' plots ' + plots);
  await page.fill('#subch', channel + '-form');
  await page.click('#subbtn');
  await until(page, () => document.getElementById('substate').textContent === 'subscribed', null,
              'the pane to subscribe');
  await page.fill('#pubch', channel + '-form');
  await page.fill('#pubtext', 'from the form');
  await page.click('#pubbtn');
  await until(page, () => window.shk.messages.some((m) => m.data === 'from the form'), null,
              'the published message in the pane');
  await until(page, () => document.getElementById('pubresult').textContent.startsWith('200 {'),
              null, 'the publish answer');
  console.log('page form ok');
  if (shot) await page.screenshot({ path: shot, fullPage: true });

  // 2. the browser's own clients
  await page.evaluate(([ch, n]) => {
    const st = window.t = { es: [], ws: [], esOpens: 0, wsOpens: 0, err: null };
    const es = new EventSource('/ev/' + ch);
    es.onopen = () => st.esOpens++;
    es.onmessage = (e) => {
      st.es.push(e.data);
      if (st.es.length === n) es.close();
    };
    let pos = null;
    const connect = () => {
      const ws = new WebSocket('ws://' + location.host + '/ws/' + ch + (pos ? '?tag=' + encodeURIComponent(pos) : ''));
      ws.onopen = () => st.wsOpens++;
      ws.onmessage = (e) => {
        const m = JSON.parse(e.data);
        pos = m.pos;
        st.ws.push(m.text);
        if (st.ws.length === n) ws.close();
      };
      ws.onclose = () => {
        if (st.ws.length < n) setTimeout(connect, 50);
      };
    };
    connect();
  }, [channel, N]);
  await until(page, () => window.t.esOpens > 0 && window.t.wsOpens > 0, null, 'both clients open');
  console.log('open');
  await until(page, (n) => window.t.es.length >= n && window.t.ws.length >= n, N,
              N + ' messages on both', 60000);
  const t = await page.evaluate(() => window.t);
  for (const k of ['es', 'ws']) {
    const want = Array.from({ length: N }, (_, i) => 'm' + (i + 1));
    if (t[k].length !== N || t[k].some((v, i) => v !== want[i]))
      return fail(k + ' got ' + JSON.stringify(t[k]));
    console.log('done ' + k + ' ' + (t[k + 'Opens'] - 1));
  }
  await finish(0);
})().catch((e) => fail(e.message));
