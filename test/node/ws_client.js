// SPDX-License-Identifier: BSD-2-Clause
// ws_client.js: a real WebSocket client (the npm "ws" package) for test_demo_http.
//   node ws_client.js URL echo       text, binary, a 100 KiB text and a ping come back; close 1000
//   node ws_client.js URL big N      a message of N bytes is refused: close 1009
//   node ws_client.js URL wait       print "open", then the server's close code and reason
// Prints one line per step; exits 0 when every step went as expected, 1 otherwise.
'use strict';
const WebSocket = require('ws');

const [url, mode, arg] = process.argv.slice(2);
const fail = (msg) => {
  console.log('FAIL ' + msg);
  process.exit(1);
};
const timer = setTimeout(() => fail('timed out'), 20000);
const ws = new WebSocket(url, { perMessageDeflate: false });
ws.on('error', (e) => fail('error: ' + e.message));
ws.on('unexpected-response', (req, res) => fail('handshake answered ' + res.statusCode));

if (mode === 'echo') {
  const big = 'x'.repeat(100 * 1024);
  const want = [
    ['text', 'hello'],
    ['binary', Buffer.from([0, 1, 2, 255])],
    ['text', big],
  ];
  let got = 0;
  ws.on('open', () => {
    console.log('open');
    ws.send('hello');
    ws.send(Buffer.from([0, 1, 2, 255]));
    ws.send(big);
  });
  ws.on('message', (data, isBinary) => {
    const [kind, body] = want[got];
    if (isBinary !== (kind === 'binary')) fail('message ' + got + ' came back as the other type');
    if (!Buffer.from(data).equals(Buffer.from(body))) fail('message ' + got + ' differs');
    console.log('echo ' + kind + ' ' + Buffer.from(data).length);
    if (++got === want.length) ws.ping('are you there');
  });
  ws.on('pong', (data) => {
    if (data.toString() !== 'are you there') fail('pong payload');
    console.log('pong');
    ws.close(1000, 'bye');
  });
  ws.on('close', (code, reason) => {
    if (got !== want.length) fail('closed after ' + got + ' echoes');
    if (code !== 1000) fail('close code ' + code);
    console.log('close ' + code + ' ' + reason.toString());
    clearTimeout(timer);
    process.exit(0);
  });
} else if (mode === 'big') {
  ws.on('open', () => {
    console.log('open');
    ws.send('y'.repeat(Number(arg)));
  });
  ws.on('message', () => fail('the big message was answered'));
  ws.on('close', (code) => {
    console.log('close ' + code);
    clearTimeout(timer);
    process.exit(code === 1009 ? 0 : 1);
  });
} else if (mode === 'wait') {
  ws.on('open', () => console.log('open'));
  ws.on('message', (data) => console.log('message ' + data.toString()));
  ws.on('close', (code, reason) => {
    console.log('close ' + code + ' ' + reason.toString());
    clearTimeout(timer);
    process.exit(0);
  });
} else {
  fail('unknown mode ' + mode);
}
