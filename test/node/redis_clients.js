// SPDX-License-Identifier: BSD-2-Clause
// redis_clients.js: real subscribers of several demo instances sharing their channels through
// Redis, for test_demo_redis. Each records the text and the position of every message it gets
// until the message "end"; test_demo_redis checks the records (every message once, in order, the
// same positions on every instance).
//   node redis_clients.js CHANNEL BASES SPEC...
// BASES: the instances' base URLs, comma-separated (instance 0, 1, ...). SPEC: MODE and an
// instance, e.g. es0, ws1, lp2:
//   es  the npm "eventsource" client on BASE/ev/CH (its event ids are the positions)
//   ws  the npm "ws" client on BASE/ws/CH (frames {"pos":"~position~","text":"~text~"})
//   lp  long-polling with fetch on BASE/lp/CH (lines "~text~=~position~", the Etag sent back as
//       If-None-Match)
//   st  streaming with fetch on BASE/st/CH (lines "~text~=~position~", resumed with ?tag=)
// A SPEC with ">J@K" (es0>1@20) moves: after K messages the client leaves its instance and
// resumes on instance J with its last position (Last-Event-ID, ?tag=, If-None-Match).
// Prints "open NAME" at each connection (a long-poll: at its first request only), "moved NAME" when it resumed elsewhere, then at "end"
// "rec NAME TEXT=POS TEXT=POS ..."; exits 0 once every client is done, 1 ("FAIL ...") otherwise.
'use strict';
const { EventSource } = require('eventsource');
const WebSocket = require('ws');

const [channel, basesArg, ...specs] = process.argv.slice(2);
const bases = basesArg.split(',');
const fail = (msg) => {
  console.log('FAIL ' + msg);
  process.exit(1);
};
const timer = setTimeout(() => fail('timed out'), Number(process.env.PUSH_CLIENT_TIMEOUT_MS || 60000));
let left = specs.length;

function client(spec) {
  const m = /^(es|ws|lp|st)(\d+)(?:>(\d+)@(\d+))?$/.exec(spec);
  if (!m || !bases[m[2]] || (m[3] && !bases[m[3]])) fail('bad spec ' + spec);
  const c = {
    name: spec, mode: m[1], base: bases[m[2]], to: m[3] ? bases[m[3]] : null,
    after: m[4] ? Number(m[4]) : 0, rec: [], pos: null, finished: false,
  };
  c.moving = () => c.to && c.rec.length >= c.after;
  // one message; true once "end" came
  c.got = (text, pos) => {
    if (c.finished) return true;
    if (text === 'end') {
      c.finished = true;
      console.log('rec ' + c.name + ' ' + c.rec.join(' '));
      if (--left === 0) {
        clearTimeout(timer);
        process.exit(0);
      }
      return true;
    }
    if (/[\s=]/.test(text)) fail(c.name + ': unexpected text "' + text + '"');
    c.rec.push(text + '=' + pos);
    c.pos = pos;
    return false;
  };
  return c;
}

function eventsource(c) {
  const open = (base, last) => {
    const opts = last ? {
      fetch: (u, init) => fetch(u, { ...init, headers: { 'Last-Event-ID': last, ...init.headers } }),
    } : {};
    const es = new EventSource(base + '/ev/' + channel, opts);
    let live = true; // events already read may still be dispatched after close()
    es.onopen = () => console.log('open ' + c.name);
    es.onmessage = (e) => {
      if (!live) return;
      if (c.got(e.data, e.lastEventId)) {
        live = false;
        es.close();
      } else if (c.moving() && base !== c.to) {
        live = false;
        es.close();
        console.log('moved ' + c.name);
        open(c.to, c.pos);
      }
    };
  };
  open(c.base, null);
}

function websocket(c) {
  let base = c.base;
  const connect = () => {
    const ws = new WebSocket(base.replace(/^http/, 'ws') + '/ws/' + channel +
                             (c.pos ? '?tag=' + encodeURIComponent(c.pos) : ''), { perMessageDeflate: false });
    ws.on('open', () => console.log('open ' + c.name));
    let live = true; // frames already read may still come after close()
    ws.on('message', (data) => {
      if (c.finished || !live) return;
      const msg = JSON.parse(data.toString());
      if (c.got(msg.text, msg.pos)) {
        ws.close();
      } else if (c.moving() && base !== c.to) {
        base = c.to;
        live = false;
        console.log('moved ' + c.name);
        ws.close(); // reconnects on close, to the other instance, after c.pos
      }
    });
    ws.on('error', () => {});
    ws.on('close', () => {
      if (!c.finished) setTimeout(connect, 20);
    });
  };
  connect();
}

const pause = (ms) => new Promise((ok) => setTimeout(ok, ms));

// "TEXT=POS" lines: true once "end" came
function lines(c, text) {
  for (const line of text.split('\n')) {
    if (!line) continue;
    const eq = line.lastIndexOf('=');
    if (eq < 0) fail(c.name + ': bad line "' + line + '"');
    if (c.got(line.slice(0, eq), line.slice(eq + 1))) return true;
  }
  return false;
}

async function longpoll(c) {
  let etag = null, base = c.base, first = true;
  for (;;) {
    let r;
    try {
      const p = fetch(base + '/lp/' + channel, { headers: etag ? { 'If-None-Match': etag } : {} });
      if (first) console.log('open ' + c.name);
      first = false;
      r = await p;
    } catch (e) {
      await new Promise((ok) => setTimeout(ok, 20)); // the connection closed under it: ask again
      continue;
    }
    etag = r.headers.get('etag') || etag;
    const body = await r.text();
    if (r.status === 304) continue;
    if (r.status !== 200) fail(c.name + ': status ' + r.status + ' ' + body);
    if (lines(c, body)) return;
    if (c.moving() && base !== c.to) {
      base = c.to;
      console.log('moved ' + c.name);
    }
  }
}

async function streaming(c) {
  let base = c.base;
  for (;;) {
    const ac = new AbortController();
    let r, moved = false, buf = '';
    try {
      r = await fetch(base + '/st/' + channel + (c.pos ? '?tag=' + encodeURIComponent(c.pos) : ''),
                      { signal: ac.signal });
    } catch (e) {
      await pause(20);
      continue;
    }
    if (r.status !== 200) fail(c.name + ': status ' + r.status);
    console.log('open ' + c.name);
    const dec = new TextDecoder();
    try {
      for await (const chunk of r.body) {
        buf += dec.decode(chunk, { stream: true });
        let nl;
        while (!moved && (nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl + 1);
          buf = buf.slice(nl + 1);
          if (lines(c, line)) {
            ac.abort();
            return;
          }
          if (c.moving() && base !== c.to) { // the rest comes from the other instance
            base = c.to;
            console.log('moved ' + c.name);
            moved = true;
          }
        }
        if (moved) break;
      }
    } catch (e) {
      if (c.finished) return;
    }
    ac.abort();
    if (!moved) await pause(20); // the server ended the stream: back with the position
  }
}

for (const s of specs) {
  const c = client(s);
  if (c.mode === 'es') eventsource(c);
  else if (c.mode === 'ws') websocket(c);
  else if (c.mode === 'st') streaming(c).catch((e) => fail(c.name + ': ' + e.message));
  else longpoll(c).catch((e) => fail(c.name + ': ' + e.message));
}
