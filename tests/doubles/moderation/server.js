#!/usr/bin/env node
// server.js: the moderation API test double of im-task (tests/doubles/moderation),
// on Node's own `http` module (no packages). It answers in three shapes:
//
//   POST /v1/moderations          OpenAI moderation ({"model","input"} ->
//                                 {"id","model","results":[{"flagged",
//                                 "categories","category_scores"}]})
//   POST / (X-TC-Action: TextModeration)
//                                 Tencent Cloud TMS TextModeration 2020-12-29
//                                 (base64 Content; TC3-HMAC-SHA256 checked
//                                 when --tencent-secret-key is set; errors as
//                                 HTTP 200 with Response.Error)
//   POST /generic/moderate        a generic JSON API ({"text"|"content",...} ->
//                                 {"request_id","result":{"decision","score",
//                                 "labels":[{"label","score"}]}})
//
// Decisions come from keyword rules (case-insensitive substring, or exact
// text): by default "blockme", "porn", "kill you", "bomb" block, "reviewme",
// "buy now", "spam" go to review, anything else passes.
//
// Scenarios keep tests apart: every API path may be prefixed with /s/<id>
// (e.g. http://127.0.0.1:19510/s/t42/v1/moderations); each scenario has its
// own latency, error rates, outage, extra rules, forced answers and counters.
// Paths without a prefix use the scenario "default".
//
// Admin (JSON):
//   GET    /healthz
//   PUT    /admin/scenarios/<id>   {"latency_ms":50,"jitter_ms":0,"error_rate":0,
//                                   "throttle_rate":0,"retry_after_s":1,
//                                   "rules":[{"text":"..","match":"exact|suffix|contains",
//                                   "decision":"block|review|pass","label":".."}],
//                                   "answer":{"status":200,"body":"raw text",
//                                   "count":N}}   (create or replace)
//   PATCH  /admin/scenarios/<id>   the same keys, merged
//   POST   /admin/scenarios/<id>/outage?mode=503|reset|hang&for_ms=N
//   DELETE /admin/scenarios/<id>/outage
//   GET    /admin/scenarios/<id>/stats
//   DELETE /admin/scenarios/<id>
//   GET    /admin/stats            every scenario's counters
//
// A request header x-moderation-force: 500|503|429|malformed|hang|reset forces
// one answer (for clients that can add headers).
//
// Usage: node server.js [--host 127.0.0.1] [--port 19510] [--latency-ms 0]
//          [--tencent-secret-key K] [--state-dir DIR]
'use strict';

const http = require('http');
const crypto = require('crypto');
const { URL } = require('url');

// ------------------------------------------------------------------ options

function parseArgs(argv) {
  const o = {
    host: '127.0.0.1',
    port: 19510,
    latencyMs: 0,
    tencentSecretKey: process.env.MODERATION_TENCENT_SECRET_KEY || '',
    stateDir: '',
  };
  for (let i = 2; i < argv.length; i++) {
    let a = argv[i];
    let v;
    const eq = a.indexOf('=');
    if (eq > 0) {
      v = a.slice(eq + 1);
      a = a.slice(0, eq);
    }
    const next = () => (v !== undefined ? v : argv[++i]);
    switch (a) {
      case '--host': o.host = next(); break;
      case '--port': o.port = Number(next()); break;
      case '--latency-ms': o.latencyMs = Number(next()); break;
      case '--tencent-secret-key': o.tencentSecretKey = next(); break;
      case '--state-dir': o.stateDir = next(); break;
      default:
        process.stderr.write(`moderation-double: unknown argument ${a}\n`);
        process.exit(2);
    }
  }
  return o;
}

const opts = parseArgs(process.argv);
const MAX_BODY = 4 << 20;
const MAX_SCENARIOS = 10000;
const MAX_RULES = 1000;

// ------------------------------------------------------------------ rules

const DEFAULT_RULES = [
  { text: 'blockme', match: 'contains', decision: 'block', label: 'Illegal' },
  { text: 'porn', match: 'contains', decision: 'block', label: 'Porn' },
  { text: 'kill you', match: 'contains', decision: 'block', label: 'Abuse' },
  { text: 'bomb', match: 'contains', decision: 'block', label: 'Terror' },
  { text: 'reviewme', match: 'contains', decision: 'review', label: 'Ad' },
  { text: 'buy now', match: 'contains', decision: 'review', label: 'Ad' },
  { text: 'spam', match: 'contains', decision: 'review', label: 'Ad' },
];

// Tencent label -> OpenAI category
const OPENAI_CATEGORY = {
  Porn: 'sexual', Abuse: 'harassment/threatening', Illegal: 'illicit', Terror: 'violence',
  Ad: 'illicit', Polity: 'hate',
};
const OPENAI_CATEGORIES = ['harassment', 'harassment/threatening', 'hate', 'hate/threatening',
  'illicit', 'illicit/violent', 'self-harm', 'self-harm/intent', 'self-harm/instructions',
  'sexual', 'sexual/minors', 'violence', 'violence/graphic'];

function decide(sc, text) {
  const lower = String(text).toLowerCase();
  for (const set of [sc.rules, DEFAULT_RULES]) {
    for (const r of set) {
      const hit = r.match === 'exact' ? text === r.text
        : r.match === 'suffix' ? text.endsWith(r.text)
          : lower.includes(String(r.text).toLowerCase());
      if (hit) {
        return { decision: r.decision, label: r.label || (r.decision === 'pass' ? 'Normal' : 'Illegal'),
          keyword: r.text };
      }
    }
  }
  return { decision: 'pass', label: 'Normal', keyword: null };
}

function scoreOf(decision) {
  return decision === 'block' ? 0.97 : decision === 'review' ? 0.62 : 0.01;
}

// --------------------------------------------------------------- scenarios

function newScenario(id) {
  return {
    id, latencyMs: opts.latencyMs, jitterMs: 0, errorRate: 0, throttleRate: 0, retryAfterS: 1,
    rules: [], answer: null, outage: null, seq: 0,
    stats: { requests: 0, inFlight: 0, maxInFlight: 0, byShape: {}, byStatus: {}, decisions: {},
      signatureFailures: 0, forced: 0, outageAnswers: 0 },
  };
}

const scenarios = new Map();
scenarios.set('default', newScenario('default'));

function scenario(id, create) {
  let sc = scenarios.get(id);
  if (!sc && create) {
    if (scenarios.size >= MAX_SCENARIOS) return null;
    sc = newScenario(id);
    scenarios.set(id, sc);
  }
  return sc;
}

function applySettings(sc, s) {
  const num = (k, min, max) => {
    if (s[k] === undefined) return undefined;
    const v = Number(s[k]);
    if (!Number.isFinite(v) || v < min || v > max) throw new Error(`${k}: expected a number in [${min}, ${max}]`);
    return v;
  };
  let v;
  if ((v = num('latency_ms', 0, 600000)) !== undefined) sc.latencyMs = v;
  if ((v = num('jitter_ms', 0, 600000)) !== undefined) sc.jitterMs = v;
  if ((v = num('error_rate', 0, 1)) !== undefined) sc.errorRate = v;
  if ((v = num('throttle_rate', 0, 1)) !== undefined) sc.throttleRate = v;
  if ((v = num('retry_after_s', 0, 3600)) !== undefined) sc.retryAfterS = v;
  if (s.rules !== undefined) {
    if (!Array.isArray(s.rules) || s.rules.length > MAX_RULES) throw new Error(`rules: expected an array of at most ${MAX_RULES}`);
    for (const r of s.rules) {
      if (!r || typeof r.text !== 'string' || !['block', 'review', 'pass'].includes(r.decision)) {
        throw new Error('rules: each needs "text" and "decision" (block, review, pass)');
      }
    }
    sc.rules = s.rules.map((r) => ({ text: r.text,
      match: ['exact', 'suffix'].includes(r.match) ? r.match : 'contains',
      decision: r.decision, label: r.label }));
  }
  if (s.answer !== undefined) {
    if (s.answer === null) sc.answer = null;
    else {
      if (typeof s.answer.body !== 'string') throw new Error('answer.body: expected a string');
      sc.answer = { status: Number(s.answer.status || 200), body: s.answer.body,
        contentType: s.answer.content_type || 'application/json',
        count: s.answer.count === undefined ? Infinity : Number(s.answer.count) };
    }
  }
}

function snapshot(sc) {
  return {
    id: sc.id, latency_ms: sc.latencyMs, jitter_ms: sc.jitterMs, error_rate: sc.errorRate,
    throttle_rate: sc.throttleRate, retry_after_s: sc.retryAfterS, rules: sc.rules.length,
    outage: sc.outage ? { mode: sc.outage.mode, until: sc.outage.until } : null,
    requests: sc.stats.requests, in_flight: sc.stats.inFlight, max_in_flight: sc.stats.maxInFlight,
    by_shape: sc.stats.byShape, by_status: sc.stats.byStatus, decisions: sc.stats.decisions,
    signature_failures: sc.stats.signatureFailures, forced: sc.stats.forced,
    outage_answers: sc.stats.outageAnswers,
  };
}

function inOutage(sc) {
  if (!sc.outage) return null;
  if (sc.outage.until && Date.now() >= sc.outage.until) {
    endOutage(sc);
    return null;
  }
  return sc.outage;
}

function endOutage(sc) {
  if (!sc.outage) return;
  for (const res of sc.outage.hung) {
    try { res.socket && res.socket.destroy(); } catch (_) { /* gone */ }
  }
  if (sc.outage.timer) clearTimeout(sc.outage.timer);
  sc.outage = null;
}

// ------------------------------------------------------------------ shapes

function bump(obj, k) { obj[k] = (obj[k] || 0) + 1; }

function reply(res, sc, status, body, headers) {
  bump(sc.stats.byStatus, String(status));
  const data = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, Object.assign({ 'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(data) }, headers || {}));
  res.end(data);
}

function openaiAnswer(sc, req, body) {
  let j;
  try { j = JSON.parse(body); } catch (_) {
    return [400, { error: { message: 'We could not parse the JSON body of your request.',
      type: 'invalid_request_error', param: null, code: null } }];
  }
  let text = '';
  if (typeof j.input === 'string') text = j.input;
  else if (Array.isArray(j.input)) {
    text = j.input.map((p) => (p && p.type === 'text' ? p.text : p && p.image_url ? p.image_url.url : '')).join(' ');
  } else {
    return [400, { error: { message: "'input' is a required property", type: 'invalid_request_error',
      param: 'input', code: null } }];
  }
  const d = decide(sc, text);
  bump(sc.stats.decisions, d.decision);
  const cats = {};
  const scores = {};
  for (const c of OPENAI_CATEGORIES) { cats[c] = false; scores[c] = 0.0001 + (c.length % 7) / 1000; }
  if (d.decision !== 'pass') {
    const c = OPENAI_CATEGORY[d.label] || 'illicit';
    scores[c] = scoreOf(d.decision);
    cats[c] = d.decision === 'block';
  }
  return [200, {
    id: `modr-${crypto.randomBytes(12).toString('hex')}`,
    model: j.model || 'omni-moderation-latest',
    results: [{ flagged: d.decision === 'block', categories: cats, category_scores: scores,
      category_applied_input_types: Object.fromEntries(OPENAI_CATEGORIES.map((c) => [c, ['text']])) }],
  }];
}

function tencentError(code, message) {
  return [200, { Response: { Error: { Code: code, Message: message }, RequestId: crypto.randomUUID() } }];
}

function tc3Check(req, body) {
  const auth = req.headers.authorization || '';
  const m = /^TC3-HMAC-SHA256 Credential=([^/]+)\/(\d{4}-\d{2}-\d{2})\/([^/]+)\/tc3_request, SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})$/.exec(auth);
  if (!m) return 'AuthFailure.InvalidAuthorization';
  const [, , date, service, signed, sig] = m;
  const ts = Number(req.headers['x-tc-timestamp']);
  if (!Number.isFinite(ts) || Math.abs(Date.now() / 1000 - ts) > 300) return 'AuthFailure.SignatureExpire';
  if (new Date(ts * 1000).toISOString().slice(0, 10) !== date) return 'AuthFailure.SignatureFailure';
  const names = signed.split(';');
  let canonHeaders = '';
  for (const n of names) {
    let v = String(req.headers[n] || '').trim();
    if (n === 'x-tc-action') v = v.toLowerCase();
    canonHeaders += `${n}:${v}\n`;
  }
  const sha = (s) => crypto.createHash('sha256').update(s).digest('hex');
  const hmac = (k, s) => crypto.createHmac('sha256', k).update(s).digest();
  const creq = `POST\n/\n\n${canonHeaders}\n${signed}\n${sha(body)}`;
  const sts = `TC3-HMAC-SHA256\n${ts}\n${date}/${service}/tc3_request\n${sha(creq)}`;
  const k = hmac(hmac(hmac(`TC3${opts.tencentSecretKey}`, date), service), 'tc3_request');
  const want = crypto.createHmac('sha256', k).update(sts).digest('hex');
  return want === sig ? null : 'AuthFailure.SignatureFailure';
}

function tencentAnswer(sc, req, body) {
  const action = req.headers['x-tc-action'] || '';
  if (action !== 'TextModeration') return tencentError('InvalidAction', `action ${action} not found`);
  if (opts.tencentSecretKey) {
    const bad = tc3Check(req, body);
    if (bad) {
      sc.stats.signatureFailures++;
      return tencentError(bad, 'The provided credentials could not be validated.');
    }
  }
  let j;
  try { j = JSON.parse(body); } catch (_) { return tencentError('InvalidParameter', 'the request body is not JSON'); }
  if (typeof j.Content !== 'string' || !j.Content) return tencentError('MissingParameter', 'The request is missing a required parameter `Content`.');
  const text = Buffer.from(j.Content, 'base64').toString('utf8');
  if ([...text].length > 10000) return tencentError('InvalidParameterValue.ErrTextContentLen', 'text content too long');
  const d = decide(sc, text);
  bump(sc.stats.decisions, d.decision);
  const sug = d.decision === 'block' ? 'Block' : d.decision === 'review' ? 'Review' : 'Pass';
  const score = Math.round(scoreOf(d.decision) * 100);
  const kws = d.keyword ? [d.keyword] : [];
  return [200, { Response: {
    BizType: j.BizType || '0', DataId: j.DataId || '', Suggestion: sug, Label: d.label, SubLabel: '',
    Score: d.decision === 'pass' ? 0 : score, Keywords: kws,
    DetailResults: [{ Label: d.label, Suggestion: sug, Keywords: kws, Score: d.decision === 'pass' ? 0 : score,
      LibType: d.keyword ? 1 : 0, LibId: '', LibName: '', SubLabel: '', Tags: [], HitInfos: [] }],
    RiskDetails: [], Extra: '', ContextText: '', SentimentAnalysis: null, HitType: '',
    RequestId: crypto.randomUUID(),
  } }];
}

function genericAnswer(sc, req, body) {
  let j;
  try { j = JSON.parse(body); } catch (_) { return [400, { error: 'the request body is not JSON' }]; }
  const text = typeof j.text === 'string' ? j.text : typeof j.content === 'string' ? j.content : null;
  if (text === null) return [422, { error: 'text (or content) is required' }];
  const d = decide(sc, text);
  bump(sc.stats.decisions, d.decision);
  sc.seq++;
  return [200, { request_id: `gen-${sc.id}-${sc.seq}`, result: { decision: d.decision,
    score: scoreOf(d.decision), labels: d.decision === 'pass' ? [] : [{ label: d.label, score: scoreOf(d.decision) }] } }];
}

function shapeOf(method, path, req) {
  if (method !== 'POST') return null;
  if (path === '/v1/moderations') return 'openai';
  if (path === '/generic/moderate') return 'generic';
  if ((path === '/' || path === '/tencent') && req.headers['x-tc-action'] !== undefined) return 'tencent';
  return null;
}

// -------------------------------------------------------------------- admin

function readBody(req, cb) {
  const chunks = [];
  let n = 0;
  let over = false;
  req.on('data', (c) => {
    n += c.length;
    if (n > MAX_BODY) { over = true; return; }
    chunks.push(c);
  });
  req.on('end', () => cb(over ? null : Buffer.concat(chunks).toString('utf8'), over));
  req.on('error', () => {});
}

function admin(req, res, url, body) {
  const send = (code, v) => {
    const data = JSON.stringify(v);
    res.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(data) });
    res.end(data);
  };
  const parts = url.pathname.split('/').filter(Boolean); // admin, scenarios, id, ...
  if (url.pathname === '/admin/stats' && req.method === 'GET') {
    return send(200, Object.fromEntries([...scenarios].map(([k, sc]) => [k, snapshot(sc)])));
  }
  if (parts[1] !== 'scenarios' || !parts[2] || !/^[A-Za-z0-9._-]{1,100}$/.test(parts[2])) {
    return send(404, { error: 'unknown admin path' });
  }
  const id = parts[2];
  const sub = parts[3] || '';
  if (sub === '' && (req.method === 'PUT' || req.method === 'PATCH')) {
    let s;
    try { s = body ? JSON.parse(body) : {}; } catch (_) { return send(400, { error: 'body is not JSON' }); }
    let sc = scenario(id, false);
    if (req.method === 'PUT' || !sc) {
      if (sc) endOutage(sc);
      sc = newScenario(id);
      if (scenarios.size >= MAX_SCENARIOS && !scenarios.has(id)) return send(429, { error: 'too many scenarios' });
    }
    try { applySettings(sc, s); } catch (e) { return send(400, { error: e.message }); }
    scenarios.set(id, sc);
    return send(200, snapshot(sc));
  }
  const sc = scenario(id, false);
  if (!sc) return send(404, { error: `no scenario ${id}` });
  if (sub === '' && req.method === 'DELETE') {
    endOutage(sc);
    if (id !== 'default') scenarios.delete(id);
    return send(200, { ok: true });
  }
  if (sub === 'stats' && req.method === 'GET') return send(200, snapshot(sc));
  if (sub === 'outage' && req.method === 'POST') {
    const mode = url.searchParams.get('mode') || '503';
    if (!['503', 'reset', 'hang'].includes(mode)) return send(400, { error: 'mode: 503, reset or hang' });
    const forMs = Number(url.searchParams.get('for_ms') || 0);
    endOutage(sc);
    sc.outage = { mode, until: forMs > 0 ? Date.now() + forMs : 0, hung: new Set(), timer: null };
    if (forMs > 0) sc.outage.timer = setTimeout(() => endOutage(sc), forMs);
    return send(200, snapshot(sc));
  }
  if (sub === 'outage' && req.method === 'DELETE') {
    endOutage(sc);
    return send(200, snapshot(sc));
  }
  return send(404, { error: 'unknown admin path' });
}

// ------------------------------------------------------------------- server

function handle(req, res) {
  let url;
  try { url = new URL(req.url, 'http://x'); } catch (_) { res.writeHead(400); res.end(); return; }
  readBody(req, (body, over) => {
    if (over) { res.writeHead(413); res.end(); return; }
    if (url.pathname === '/healthz') { res.writeHead(200, { 'Content-Type': 'text/plain' }); res.end('ok\n'); return; }
    if (url.pathname.startsWith('/admin/')) { admin(req, res, url, body); return; }
    let path = url.pathname;
    let scId = 'default';
    const m = /^\/s\/([A-Za-z0-9._-]{1,100})(\/.*)?$/.exec(path);
    if (m) { scId = m[1]; path = m[2] || '/'; }
    const shape = shapeOf(req.method, path, req);
    if (!shape) { res.writeHead(404, { 'Content-Type': 'application/json' }); res.end('{"error":"not found"}'); return; }
    const sc = scenario(scId, true);
    if (!sc) { res.writeHead(503); res.end(); return; }
    sc.stats.requests++;
    bump(sc.stats.byShape, shape);
    sc.stats.inFlight++;
    if (sc.stats.inFlight > sc.stats.maxInFlight) sc.stats.maxInFlight = sc.stats.inFlight;
    let finished = false;
    const done = () => { if (!finished) { finished = true; sc.stats.inFlight--; } };
    res.on('close', done);
    res.on('finish', done);

    const outage = inOutage(sc);
    if (outage) {
      sc.stats.outageAnswers++;
      if (outage.mode === 'reset') { bump(sc.stats.byStatus, 'reset'); req.socket.destroy(); return; }
      if (outage.mode === 'hang') { bump(sc.stats.byStatus, 'hang'); outage.hung.add(res); return; }
      reply(res, sc, 503, { error: { message: 'The service is temporarily unavailable', type: 'server_error' } }, { 'Retry-After': '1' });
      return;
    }
    const force = req.headers['x-moderation-force'];
    if (force) {
      sc.stats.forced++;
      if (force === 'reset') { req.socket.destroy(); return; }
      if (force === 'hang') return;
      if (force === 'malformed') { reply(res, sc, 200, '{"this is": not json'); return; }
      const st = Number(force);
      if (st >= 400 && st < 600) {
        reply(res, sc, st, { error: { message: `forced ${st}` } }, st === 429 ? { 'Retry-After': String(sc.retryAfterS) } : {});
        return;
      }
    }
    const delay = sc.latencyMs + (sc.jitterMs ? Math.random() * sc.jitterMs : 0);
    const answer = () => {
      if (sc.answer && sc.answer.count > 0) {
        sc.answer.count--;
        sc.stats.forced++;
        bump(sc.stats.byStatus, String(sc.answer.status));
        res.writeHead(sc.answer.status, { 'Content-Type': sc.answer.contentType, 'Content-Length': Buffer.byteLength(sc.answer.body) });
        res.end(sc.answer.body);
        return;
      }
      const r = Math.random();
      if (r < sc.throttleRate) {
        const hdr = { 'Retry-After': String(sc.retryAfterS) };
        if (shape === 'tencent') { reply(res, sc, 200, tencentError('RequestLimitExceeded', 'Your current request times exceeds the limit.')[1], hdr); return; }
        reply(res, sc, 429, { error: { message: 'Rate limit reached', type: 'requests', code: 'rate_limit_exceeded' } }, hdr);
        return;
      }
      if (r < sc.throttleRate + sc.errorRate) {
        if (shape === 'tencent') { reply(res, sc, 200, tencentError('InternalError', 'An internal error has occurred.')[1]); return; }
        reply(res, sc, 500, { error: { message: 'The server had an error while processing your request.', type: 'server_error' } });
        return;
      }
      const [status, out] = shape === 'openai' ? openaiAnswer(sc, req, body)
        : shape === 'tencent' ? tencentAnswer(sc, req, body) : genericAnswer(sc, req, body);
      reply(res, sc, status, out);
    };
    if (delay > 0) setTimeout(answer, delay); else answer();
  });
}

const server = http.createServer(handle);
server.keepAliveTimeout = 65000;
server.headersTimeout = 66000;
server.maxRequestsPerSocket = 0;
server.requestTimeout = 0;
server.listen(opts.port, opts.host, () => {
  const a = server.address();
  process.stdout.write(`moderation-double: listening on http://${a.address}:${a.port} (pid ${process.pid}, tencent signature check ${opts.tencentSecretKey ? 'on' : 'off'})\n`);
});
const stop = (sig) => {
  process.stdout.write(`moderation-double: ${sig}, stopping\n`);
  for (const sc of scenarios.values()) endOutage(sc);
  server.close(() => process.exit(0));
  server.closeAllConnections && server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
};
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));
