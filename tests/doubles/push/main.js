#!/usr/bin/env node
// main.js: the push doubles of the local stack (scripts/stack.sh): an APNs
// double and an FCM double (with its OAuth2 token endpoint) on Node's http2
// module over TLS, and an admin HTTP server. See docs/push.md.
//
//   node main.js -state-dir DIR [-host 127.0.0.1] [-port 19600] [-delay-ms N]
//                [-record 0] [-initial-streams 1] [-max-streams 1000] [-token-ttl 3600]
//                [-workers N]   (benchmarks: N processes, per-process records)
//     port     APNs (TLS, h2), token auth     port+1  FCM and /token (TLS, h2)
//     port+2   admin (HTTP/1.1)
//     port+3   APNs (TLS, h2), certificate auth: asks for a client certificate
//              and accepts one the test CA (push-ca.pem, key push-ca.key)
//              signed; admin provider name apns-cert
//
// DIR receives, once: push-ca.pem (the CA of the doubles' certificate),
// apns-key.p8 / apns-key2.p8 (teams TESTTEAM01/02, keys TESTKEY001/002),
// fcm-service-account.json (project imtask-test), all 0600; push-ca.key
// signs client certificates for the certificate-auth APNs port.
//
// Admin:
//   GET  /healthz
//   GET  /info                       addresses, files, ids
//   GET  /stats?provider=apns|apns-cert|fcm[&match=S][&arrivals=1]
//                                    counters (with match: per token containing S;
//                                    arrivals=1: the recorded requests' arrival
//                                    times, monotonic ms, ascending)
//   GET  /requests?provider=..&match=S[&limit=N]  the recorded requests
//   POST /script?provider=..         body {"token":"...","spec":"TooManyRequests-x2-ra1"}
//   POST /config?delay_ms=&initial_streams=&max_streams=&token_ttl=&record=0|1
//   POST /fcm/expire-tokens          every access token issued so far expires
'use strict';

const cluster = require('cluster');
const fs = require('fs');
const http = require('http');
const { URL } = require('url');
const { ensureTls, ensureApnsKeys, ensureServiceAccount } = require('./common');
const { ApnsDouble } = require('./apns');
const { FcmDouble } = require('./fcm');

function args() {
  const a = { host: '127.0.0.1', port: 19600, stateDir: '', delayMs: 0, initialStreams: 1,
    maxStreams: 1000, tokenTtl: 3600, record: true, workers: 1 };
  const v = process.argv.slice(2);
  for (let i = 0; i < v.length; i++) {
    const [k, inline] = v[i].replace(/^--?/, '').split('=');
    const val = inline !== undefined ? inline : v[++i];
    if (k === 'host') a.host = val;
    else if (k === 'port') a.port = Number(val);
    else if (k === 'state-dir') a.stateDir = val;
    else if (k === 'delay-ms') a.delayMs = Number(val);
    else if (k === 'initial-streams') a.initialStreams = Number(val);
    else if (k === 'max-streams') a.maxStreams = Number(val);
    else if (k === 'token-ttl') a.tokenTtl = Number(val);
    else if (k === 'record') a.record = val !== '0';
    else if (k === 'workers') a.workers = Number(val);
    else {
      console.error(`push-double: unknown option ${v[i]}`);
      process.exit(2);
    }
  }
  if (!a.stateDir) {
    console.error('push-double: -state-dir is required');
    process.exit(2);
  }
  return a;
}

async function main() {
  const a = args();
  if (a.workers > 1 && cluster.isPrimary) {
    // benchmarks only: N processes share the ports (connections are spread
    // over them); records, counters and scripts are per process then
    fs.mkdirSync(a.stateDir, { recursive: true });
    ensureTls(a.stateDir);
    ensureApnsKeys(a.stateDir);
    ensureServiceAccount(a.stateDir, `https://${a.host}:${a.port + 1}/token`, 'imtask-test');
    for (let i = 0; i < a.workers; i++) cluster.fork();
    const stop = () => {
      for (const w of Object.values(cluster.workers)) w.kill('SIGTERM');
      process.exit(0);
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
    return;
  }
  fs.mkdirSync(a.stateDir, { recursive: true });
  const tlsFiles = ensureTls(a.stateDir);
  const tls = { keyPem: fs.readFileSync(tlsFiles.key), certPem: fs.readFileSync(tlsFiles.cert) };
  const keys = ensureApnsKeys(a.stateDir);
  const project = 'imtask-test';
  const apnsUrl = `https://${a.host}:${a.port}`;
  const apnsCertUrl = `https://${a.host}:${a.port + 3}`;
  const fcmUrl = `https://${a.host}:${a.port + 1}`;
  const tokenUri = `${fcmUrl}/token`;
  const sa = ensureServiceAccount(a.stateDir, tokenUri, project);

  const apns = new ApnsDouble({ tls, keys, topics: ['com.gochat.im', 'com.gochat.im.voip', 'com.test.*'],
    delayMs: a.delayMs, initialStreams: a.initialStreams, maxStreams: a.maxStreams });
  const fcm = new FcmDouble({ tls, sa, tokenUri, project, delayMs: a.delayMs, tokenTtl: a.tokenTtl,
    maxStreams: a.maxStreams });
  const apnsCert = new ApnsDouble({ tls, keys, topics: apns.opts.topics, delayMs: a.delayMs,
    initialStreams: a.initialStreams, maxStreams: a.maxStreams, certAuth: true,
    caPem: fs.readFileSync(tlsFiles.ca) });
  apns.rec.record = a.record;
  apnsCert.rec.record = a.record;
  fcm.rec.record = a.record;
  await apns.listen(a.port, a.host);
  await fcm.listen(a.port + 1, a.host);
  await apnsCert.listen(a.port + 3, a.host);

  const pick = (q) => {
    const p = q.get('provider');
    return p === 'fcm' ? fcm : p === 'apns-cert' ? apnsCert : apns;
  };
  const admin = http.createServer((req, res) => {
    const u = new URL(req.url, 'http://x');
    const q = u.searchParams;
    const json = (status, obj) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(obj));
    };
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const route = `${req.method} ${u.pathname}`;
      if (route === 'GET /healthz') return json(200, { ok: true });
      if (route === 'GET /info') {
        return json(200, {
          apns: apnsUrl, apns_cert: apnsCertUrl, fcm: fcmUrl, token_uri: tokenUri,
          ca_file: tlsFiles.ca, ca_key_file: tlsFiles.caKey, project_id: project,
          apns_keys: keys.map((k) => ({ team_id: k.team, key_id: k.kid, key_file: k.path })),
          fcm_credentials_file: sa.path, client_email: sa.sa.client_email,
        });
      }
      if (route === 'GET /stats') {
        const d = pick(q);
        const st = d.stats(q.get('match') || '');
        if (q.get('arrivals') === '1') st.arrivals = d.rec.arrivals(q.get('match') || '');
        return json(200, st);
      }
      if (route === 'GET /requests') {
        return json(200, pick(q).rec.find(q.get('match') || '', Number(q.get('limit') || 1000)));
      }
      if (route === 'POST /script') {
        let s;
        try {
          s = JSON.parse(body);
        } catch (e) {
          return json(400, { error: 'body: {"token":..,"spec":..}' });
        }
        for (const it of Array.isArray(s) ? s : [s]) pick(q).rec.scripts.set(it.token, it.spec);
        return json(200, { ok: true });
      }
      if (route === 'POST /config') {
        for (const d of [apns, apnsCert, fcm]) {
          if (q.has('delay_ms')) d.opts.delayMs = Number(q.get('delay_ms'));
          if (q.has('record')) d.rec.record = q.get('record') !== '0';
        }
        if (q.has('token_ttl')) fcm.opts.tokenTtl = Number(q.get('token_ttl'));
        return json(200, { delay_ms: apns.opts.delayMs, record: apns.rec.record,
          token_ttl: fcm.opts.tokenTtl });
      }
      if (route === 'POST /fcm/expire-tokens') {
        fcm.expireTokens();
        return json(200, { ok: true });
      }
      return json(404, { error: `no route ${route}` });
    });
  });
  // with -workers, the admin port is shared too (any process answers)
  await new Promise((r) => admin.listen(a.port + 2, a.host, r));
  console.log(`push-double: APNs ${apnsUrl} (certificate auth ${apnsCertUrl}), FCM ${fcmUrl} ` +
    `(token ${tokenUri}), admin ` +
    `http://${a.host}:${a.port + 2}, state ${a.stateDir}`);
  const stop = () => {
    console.log('push-double: stopping');
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((e) => {
  console.error('push-double:', e);
  process.exit(1);
});
