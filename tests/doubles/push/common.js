// common.js: what the APNs and FCM doubles share: test credentials and TLS
// certificates (generated once into the state directory), the outcome
// directives read from device tokens, and the request records the admin
// server reports.
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const { execFileSync } = require('child_process');

// ---- files ---------------------------------------------------------------

function writePrivate(file, data) {
  fs.writeFileSync(file + '.tmp', data, { mode: 0o600 });
  fs.renameSync(file + '.tmp', file);
}

// A CA and a server certificate it signed (SAN 127.0.0.1 and localhost),
// made with the openssl command once per state directory.
function ensureTls(dir) {
  const ca = path.join(dir, 'push-ca.pem');
  const key = path.join(dir, 'server.key');
  const cert = path.join(dir, 'server.pem');
  if (fs.existsSync(ca) && fs.existsSync(key) && fs.existsSync(cert)) {
    return { ca, key, cert, caKey: path.join(dir, 'push-ca.key') };
  }
  const caKey = path.join(dir, 'push-ca.key');
  const csr = path.join(dir, 'server.csr');
  const ext = path.join(dir, 'server.ext');
  const run = (args) => execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  run(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', caKey, '-out', ca + '.tmp', '-days', '3650', '-subj', '/CN=imtask push doubles test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  run(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key,
    '-out', csr, '-subj', '/CN=localhost']);
  fs.writeFileSync(ext, 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n' +
    'keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n');
  run(['x509', '-req', '-in', csr, '-CA', ca + '.tmp', '-CAkey', caKey, '-set_serial',
    '0x' + crypto.randomBytes(8).toString('hex'), '-out', cert, '-days', '3650', '-extfile', ext]);
  fs.chmodSync(key, 0o600);
  fs.renameSync(ca + '.tmp', ca);
  fs.rmSync(csr, { force: true });
  fs.rmSync(ext, { force: true });
  return { ca, key, cert, caKey };
}

// The APNs signing keys (.p8, P-256) with their team and key ids.
function ensureApnsKeys(dir) {
  const keys = [
    { team: 'TESTTEAM01', kid: 'TESTKEY001', file: 'apns-key.p8' },
    { team: 'TESTTEAM02', kid: 'TESTKEY002', file: 'apns-key2.p8' },
  ];
  for (const k of keys) {
    const file = path.join(dir, k.file);
    if (!fs.existsSync(file)) {
      const { privateKey } = crypto.generateKeyPairSync('ec', {
        namedCurve: 'P-256',
        privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
        publicKeyEncoding: { type: 'spki', format: 'pem' },
      });
      writePrivate(file, privateKey);
    }
    k.path = file;
    k.publicKey = crypto.createPublicKey(fs.readFileSync(file));
  }
  return keys;
}

// The FCM service account JSON (RSA key), token_uri pointing at the double.
function ensureServiceAccount(dir, tokenUri, project) {
  const file = path.join(dir, 'fcm-service-account.json');
  let sa = null;
  if (fs.existsSync(file)) {
    sa = JSON.parse(fs.readFileSync(file, 'utf8'));
    if (sa.token_uri !== tokenUri) {
      sa.token_uri = tokenUri; // the port changed
      writePrivate(file, JSON.stringify(sa, null, 2));
    }
  } else {
    const { privateKey } = crypto.generateKeyPairSync('rsa', {
      modulusLength: 2048,
      privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
      publicKeyEncoding: { type: 'spki', format: 'pem' },
    });
    sa = {
      type: 'service_account',
      project_id: project,
      private_key_id: crypto.randomBytes(20).toString('hex'),
      private_key: privateKey,
      client_email: `push-double@${project}.iam.gserviceaccount.com`,
      client_id: '100000000000000000001',
      auth_uri: 'https://accounts.google.com/o/oauth2/auth',
      token_uri: tokenUri,
    };
    writePrivate(file, JSON.stringify(sa, null, 2));
  }
  return { path: file, sa, publicKey: crypto.createPublicKey(sa.private_key) };
}

// ---- JWS -----------------------------------------------------------------

function b64urlJson(s) {
  return JSON.parse(Buffer.from(s, 'base64url').toString('utf8'));
}

// Splits and verifies a compact JWS; alg 'ES256' (R||S) or 'RS256'.
// Returns { header, claims } or throws with the reason.
function verifyJws(token, alg, keyFor) {
  const parts = token.split('.');
  if (parts.length !== 3) throw new Error('not a compact JWS');
  const header = b64urlJson(parts[0]);
  const claims = b64urlJson(parts[1]);
  if (header.alg !== alg) throw new Error(`alg ${header.alg}, want ${alg}`);
  const key = keyFor(header, claims);
  if (!key) throw new Error('unknown key');
  const sig = Buffer.from(parts[2], 'base64url');
  if (alg === 'ES256' && sig.length !== 64) throw new Error(`ES256 signature of ${sig.length} bytes, want 64 (R||S)`);
  const ok = crypto.verify('sha256', Buffer.from(parts[0] + '.' + parts[1]),
    alg === 'ES256' ? { key, dsaEncoding: 'ieee-p1363' } : key, sig);
  if (!ok) throw new Error('bad signature');
  return { header, claims };
}

// ---- outcome directives ----------------------------------------------------
//
// A token starting with directives, '-' separated, says how to answer:
//   <Outcome>      a reason (APNs) or errorCode (FCM) name, or ok
//   x<N>           the outcome only for the first N requests of this token, then ok
//   ra<S>          Retry-After: S (seconds);  radate<S>: as an HTTP-date S from now
//   delay<MS>      answer after MS
//   goaway         after answering, GOAWAY naming this stream the last one
//                  processed: streams opened after it are refused
//   reset          RST_STREAM instead of an answer;  drop: close the socket
// Parsing stops at the first segment that is none of these. A script set
// through the admin server for an exact token wins over its prefix.

function parseSpec(token, outcomes) {
  const spec = { outcome: null, times: Infinity, ra: null, radate: null, delay: 0, goaway: false,
    reset: false, drop: false };
  let m;
  for (const seg of token.split('-')) {
    if (outcomes.has(seg) || seg === 'ok') spec.outcome = seg;
    else if ((m = /^x(\d+)$/.exec(seg))) spec.times = Number(m[1]);
    else if ((m = /^ra(\d+)$/.exec(seg))) spec.ra = Number(m[1]);
    else if ((m = /^radate(\d+)$/.exec(seg))) spec.radate = Number(m[1]);
    else if ((m = /^delay(\d+)$/.exec(seg))) spec.delay = Number(m[1]);
    else if (seg === 'goaway') spec.goaway = true;
    else if (seg === 'reset') spec.reset = true;
    else if (seg === 'drop') spec.drop = true;
    else break;
  }
  return spec;
}

function retryAfterValue(spec) {
  if (spec.ra !== null) return String(spec.ra);
  if (spec.radate !== null) return new Date(Date.now() + spec.radate * 1000).toUTCString();
  return null;
}

// ---- records ----------------------------------------------------------------

// When a request arrived (its HEADERS were read): monotonic milliseconds
// (performance.now(), microsecond resolution), for rate checks; records keep
// it as `mono` next to the wall-clock `t`.
function monoMs() {
  return Math.round(performance.now() * 1000) / 1000;
}

const MAX_RECORDS = 300000;
const MAX_TOKENS = 2000000;

class Recorder {
  constructor(name) {
    this.name = name;
    this.records = [];
    this.perToken = new Map(); // token -> { requests, ok, last }
    this.scripts = new Map();  // token -> spec string
    this.totals = { requests: 0, ok: 0, byStatus: {}, byReason: {} };
    this.record = true;
  }

  // Requests of this token so far (before the one being answered).
  seen(token) {
    const t = this.perToken.get(token);
    return t ? t.requests : 0;
  }

  add(rec) {
    this.totals.requests++;
    this.totals.byStatus[rec.status] = (this.totals.byStatus[rec.status] || 0) + 1;
    if (rec.reason) this.totals.byReason[rec.reason] = (this.totals.byReason[rec.reason] || 0) + 1;
    if (rec.status === 200) this.totals.ok++;
    if (rec.token !== undefined) {
      let t = this.perToken.get(rec.token);
      if (!t) {
        if (this.perToken.size >= MAX_TOKENS) this.perToken.clear();
        t = { requests: 0, ok: 0 };
        this.perToken.set(rec.token, t);
      }
      t.requests++;
      if (rec.status === 200) t.ok++;
    }
    if (!this.record) return;
    if (this.records.length >= MAX_RECORDS) this.records.splice(0, MAX_RECORDS / 10);
    this.records.push(rec);
  }

  stats(match) {
    if (!match) return { ...this.totals, tokens: this.perToken.size };
    const tokens = {};
    let requests = 0;
    let ok = 0;
    for (const [tok, t] of this.perToken) {
      if (!tok.includes(match)) continue;
      tokens[tok] = t;
      requests += t.requests;
      ok += t.ok;
    }
    return { requests, ok, tokens };
  }

  // The arrival times (monotonic ms, see rec.mono) of the recorded requests
  // of tokens containing match, in order.
  arrivals(match) {
    const out = [];
    for (const r of this.records) {
      if (r.mono === undefined || (match && !(r.token || '').includes(match))) continue;
      out.push(r.mono);
    }
    return out.sort((a, b) => a - b);
  }

  find(match, limit) {
    const out = [];
    for (const r of this.records) {
      if (match && !(r.token || '').includes(match)) continue;
      out.push(r);
      if (out.length >= limit) break;
    }
    return out;
  }
}

module.exports = {
  ensureTls, ensureApnsKeys, ensureServiceAccount, verifyJws, parseSpec, retryAfterValue,
  Recorder, monoMs,
};
