// SPDX-License-Identifier: BSD-2-Clause
// push_clients.js: real subscribers of the demo's push-stream interface for test_demo_push,
// each doing what its kind of client does when the server closes it (a reload):
//   es  the npm "eventsource" client on BASE/ev/CH: reconnects by itself with Last-Event-ID
//   ws  the npm "ws" client on BASE/ws/CH: its frames carry ~position~, it reconnects with ?tag=
//   lp  long-polling with fetch on BASE/lp/CH: sends the last Etag back as If-None-Match
//   wp  the "ws" client on BASE/wsp/CHp (a location with ping frames): done after 2 pings
//   node push_clients.js BASE CHANNEL N MODE...
// The messages are "m1" .. "mN". Each client checks that it gets every one once and in order.
// Prints "open MODE" at its first connection, "reconnect MODE" at later ones, "done MODE R" (R
// reconnections) after mN; exits 0 when every client is done, 1 ("FAIL ...") otherwise.
'use strict';
const { EventSource } = require('eventsource');
const WebSocket = require('ws');

const [base, channel, nstr, ...modes] = process.argv.slice(2);
const N = Number(nstr);
const fail = (msg) => {
  console.log('FAIL ' + msg);
  process.exit(1);
};
const timer = setTimeout(() => fail('timed out'), Number(process.env.PUSH_CLIENT_TIMEOUT_MS || 60000));
let left = modes.length;

function checker(mode) {
  let next = 1, opens = 0;
  return {
    open() {
      console.log((opens++ ? 'reconnect ' : 'open ') + mode);
    },
    got(text) {
      if (text !== 'm' + next) fail(mode + ': got "' + text + '", expected m' + next);
      if (next++ === N) {
        console.log('done ' + mode + ' ' + (opens - 1));
        if (--left === 0) {
          clearTimeout(timer);
          process.exit(0);
        }
        return true;
      }
      return false;
    },
  };
}

function eventsource() {
  const c = checker('es');
  const es = new EventSource(base + '/ev/' + channel);
  es.onopen = () => c.open();
  es.onmessage = (e) => {
    if (c.got(e.data)) es.close();
  };
}

function websocket() {
  const c = checker('ws');
  let pos = null, finished = false;
  const connect = () => {
    const ws = new WebSocket(base.replace(/^http/, 'ws') + '/ws/' + channel +
                             (pos ? '?tag=' + encodeURIComponent(pos) : ''), { perMessageDeflate: false });
    ws.on('open', () => c.open());
    ws.on('message', (data) => {
      const m = JSON.parse(data.toString());
      pos = m.pos;
      if (c.got(m.text)) {
        finished = true;
        ws.close();
      }
    });
    ws.on('error', () => {});
    ws.on('close', () => {
      if (!finished) setTimeout(connect, 50);
    });
  };
  connect();
}

async function longpoll() {
  const c = checker('lp');
  let etag = null, first = true;
  for (;;) {
    let r;
    try {
      r = await fetch(base + '/lp/' + channel, { headers: etag ? { 'If-None-Match': etag } : {} });
    } catch (e) {
      await new Promise((ok) => setTimeout(ok, 50)); // the connection closed under it: ask again
      continue;
    }
    if (first) {
      c.open();
      first = false;
    }
    etag = r.headers.get('etag') || etag;
    const body = await r.text();
    if (r.status === 304) {
      c.open(); // a drain (the ttl is longer than the test): asked again
      continue;
    }
    if (r.status !== 200) fail('lp: status ' + r.status + ' ' + body);
    for (const line of body.split('\n'))
      if (line && c.got(line)) return;
  }
}

function pings() {
  let n = 0, opens = 0;
  const connect = () => {
    const ws = new WebSocket(base.replace(/^http/, 'ws') + '/wsp/' + channel + 'p', { perMessageDeflate: false });
    ws.on('open', () => console.log((opens++ ? 'reconnect' : 'open') + ' wp'));
    ws.on('ping', () => {
      if (++n !== 2) return;
      console.log('done wp 2');
      ws.close();
      if (--left === 0) {
        clearTimeout(timer);
        process.exit(0);
      }
    });
    ws.on('error', () => {});
    ws.on('close', () => {
      if (n < 2) setTimeout(connect, 50); // a reload closed it
    });
  };
  connect();
}

for (const m of modes) {
  if (m === 'es') eventsource();
  else if (m === 'ws') websocket();
  else if (m === 'lp') longpoll().catch((e) => fail('lp: ' + e.message));
  else if (m === 'wp') pings();
  else fail('unknown mode ' + m);
}
