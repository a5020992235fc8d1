// node_vectors.mjs -- Stripe-Signature vectors from and for the official
// stripe npm package, to cross-check src/sp_signature.c.
//
//   node node_vectors.mjs generate > node_vectors.jsonl
//       One JSON line per vector, signed by stripe.webhooks.generateTestHeaderString:
//       {"name", "secret_hex", "timestamp", "payload_hex", "header"}.
//       Payloads and secrets travel as hex so every byte (CRLF, UTF-8) survives.
//
//   node node_vectors.mjs verify c_vectors.jsonl
//       Lines written by verify_vectors (sp_sig_make_header, some tampered),
//       each with "expect": "ok" or "fail"; checks each one with
//       stripe.webhooks.constructEvent and prints "ok - ..." / "not ok - ...".
//
// Run by `make -C test/unit node-check`, which counts the lines.

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Stripe from 'stripe';

const here = path.dirname(fileURLToPath(import.meta.url));
const fixtures = path.join(here, '..', 'fixtures', 'events');

// No request is ever made: webhooks need no API key, the constructor does.
const stripe = new Stripe('sk_test_placeholder_never_used');

const hex = (s) => Buffer.from(s, 'utf8').toString('hex');
const unhex = (h) => Buffer.from(h, 'hex');

function payloads() {
  const list = [
    ['small', '{"id":"evt_1","object":"event"}'],
    ['empty_object', '{}'],
    ['unicode',
      '{"id":"evt_u","name":"Caf\u00e9 \u00fcber \u4e2d\u6587 \u05e2\u05d1\u05e8\u05d9\u05ea ' +
      '\ud83d\ude00\ud83c\udf89","escaped":"\\u00e9\\ud83d\\ude00"}'],
    ['crlf', '{\r\n  "id": "evt_crlf",\r\n  "object": "event"\r\n}\r\n'],
    ['whitespace', ' \t{"a" :\t[1, 2,\n3]}\n\n'],
    ['escapes', '{"s":"quote \\" backslash \\\\ nul \\u0000 tab \\t slash \\/"}'],
  ];
  const big = [];
  for (let i = 0; i < 20000; i++) big.push(`"item-${i}-\u00e9"`);
  list.push(['big', `{"id":"evt_big","data":[${big.join(',')}]}`]);
  for (const f of fs.readdirSync(fixtures).filter((f) => f.endsWith('.json')).sort()) {
    list.push([`fixture:${f}`, fs.readFileSync(path.join(fixtures, f), 'utf8')]);
  }
  return list;
}

const secrets = [
  'whsec_test_secret',
  'whsec_5f8a9c3e1b7d4a6f0e2c8b9d1a3f5e7c',
  'whsec_with space and = , signs',
  'whsec_\u00fcnicode_\u00e9',
];
const timestamps = [1700000000, 1, 1793200000, 4102444800];

function generate() {
  const out = [];
  let n = 0;
  for (const [name, payload] of payloads()) {
    // every payload once per secret, timestamps in turn
    secrets.forEach((secret, si) => {
      const timestamp = timestamps[(n + si) % timestamps.length];
      const header = stripe.webhooks.generateTestHeaderString({ payload, secret, timestamp });
      out.push({
        name: `${name}/secret${si}/t${timestamp}`,
        secret_hex: hex(secret),
        timestamp,
        payload_hex: hex(payload),
        header,
      });
    });
    n++;
  }

  // a secret roll: Stripe signs with both secrets, one header
  const payload = '{"id":"evt_roll","object":"event"}';
  const timestamp = 1700000123;
  const a = stripe.webhooks.generateTestHeaderString({ payload, secret: secrets[0], timestamp });
  const b = stripe.webhooks.generateTestHeaderString({ payload, secret: secrets[1], timestamp });
  const rolled = `${a},${b.split(',')[1]}`;
  for (const si of [0, 1]) {
    out.push({
      name: `secret_roll/secret${si}`,
      secret_hex: hex(secrets[si]),
      timestamp,
      payload_hex: hex(payload),
      header: rolled,
    });
  }

  for (const v of out) process.stdout.write(JSON.stringify(v) + '\n');
}

function verify(file) {
  const lines = fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.length > 0);
  if (lines.length === 0) {
    console.log(`not ok - node verify: no vectors in ${file}`);
    return;
  }
  for (const line of lines) {
    const v = JSON.parse(line);
    const secret = unhex(v.secret_hex).toString('utf8');
    let accepted = false;
    let why = '';
    try {
      // receivedAt (ms) pins "now" to the signing time
      stripe.webhooks.constructEvent(unhex(v.payload_hex), v.header, secret, 300,
        undefined, v.timestamp * 1000);
      accepted = true;
    } catch (e) {
      why = e.message.split('.')[0];
    }
    const good = accepted === (v.expect === 'ok');
    const verdict = accepted ? 'accepted' : `refused (${why})`;
    console.log(`${good ? 'ok' : 'not ok'} - node constructEvent ${v.name}: ${verdict}`);
  }
}

const [mode, arg] = process.argv.slice(2);
if (mode === 'generate') {
  generate();
} else if (mode === 'verify' && arg) {
  verify(arg);
} else {
  console.error('usage: node node_vectors.mjs generate | verify FILE');
  process.exit(2);
}
