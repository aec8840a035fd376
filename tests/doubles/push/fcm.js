// fcm.js: the FCM double: the HTTP v1 messages:send API and the OAuth2
// token endpoint of a service account, over TLS (ALPN h2). The assertion
// (RS256) is verified with the test service account's public key, access
// tokens are checked on every send, messages are checked the way FCM
// documents them, and answers are scripted per registration token.
'use strict';

const http2 = require('http2');
const crypto = require('crypto');
const { verifyJws, parseSpec, retryAfterValue, Recorder, monoMs } = require('./common');

// errorCode -> [HTTP status, canonical status]
const CODES = {
  UNSPECIFIED_ERROR: [500, 'INTERNAL'],
  INVALID_ARGUMENT: [400, 'INVALID_ARGUMENT'],
  UNREGISTERED: [404, 'NOT_FOUND'],
  SENDER_ID_MISMATCH: [403, 'PERMISSION_DENIED'],
  QUOTA_EXCEEDED: [429, 'RESOURCE_EXHAUSTED'],
  UNAVAILABLE: [503, 'UNAVAILABLE'],
  INTERNAL: [500, 'INTERNAL'],
  THIRD_PARTY_AUTH_ERROR: [401, 'UNAUTHENTICATED'],
};
// UNAUTHENTICATED: a 401 without FcmError (our access token refused)
const OUTCOMES = new Set([...Object.keys(CODES), 'UNAUTHENTICATED']);
const SCOPE = 'https://www.googleapis.com/auth/firebase.messaging';
const MAX_BODY = 64 * 1024;

class FcmDouble {
  constructor(opts) {
    this.opts = opts; // { tls, sa, tokenUri, project, delayMs, tokenTtl, maxStreams }
    this.rec = new Recorder('fcm');
    // Access tokens carry their expiry and an HMAC (keyed by the service
    // account's key, the same in every process of a -workers cluster), so
    // any process can check them; /fcm/expire-tokens revokes those issued
    // before it.
    this.hmacKey = crypto.createHash('sha256').update(opts.sa.sa.private_key).digest();
    this.revokedBefore = 0;
    this.tokenRequests = 0;
    this.tokenRefusals = 0;
    this.sessions = 0;
    this.inFlight = 0;
    this.maxInFlight = 0;
  }

  listen(port, host) {
    const o = this.opts;
    this.server = http2.createSecureServer({
      key: o.tls.keyPem, cert: o.tls.certPem, allowHTTP1: false,
      // the default (10 MB) makes Node refuse streams at a few thousand per second
      maxSessionMemory: 512,
      // Node counts a stream until its event loop has cleaned it up and, past
      // 100 refused streams, tears the session down (GOAWAY INTERNAL_ERROR):
      // under load that is the double's limit, not the client's
      maxSessionRejectedStreams: 1000000,
      // libcurl 7.88 sends frames on streams Node has closed already (window
      // updates); past 1000 of those Node ends the session (GOAWAY INTERNAL_ERROR)
      maxSessionInvalidFrames: 1000000,
      // libcurl 7.88 ends many finished streams with RST_STREAM; nghttp2's
      // rapid-reset guard (1000 burst, 33/s) would end the session
      // (GOAWAY INTERNAL_ERROR) after about 2000 requests
      streamResetBurst: 1000000,
      streamResetRate: 1000000,
      settings: { maxConcurrentStreams: o.maxStreams },
    });
    this.server.on('session', (s) => {
      this.sessions++;
      s.on('error', () => {});
    });
    this.server.on('stream', (st, h) => this.onStream(st, h));
    this.server.on('sessionError', () => {});
    return new Promise((res) => this.server.listen(port, host, res));
  }

  onStream(stream, headers) {
    stream.arrived = monoMs();
    const chunks = [];
    let size = 0;
    let done = false;
    this.inFlight++;
    if (this.inFlight > this.maxInFlight) this.maxInFlight = this.inFlight;
    stream.on('close', () => {
      if (!done) {
        done = true;
        this.inFlight--;
      }
    });
    stream.on('error', () => {});
    stream.on('data', (c) => {
      size += c.length;
      if (size <= MAX_BODY) chunks.push(c);
    });
    stream.on('end', () => {
      const body = Buffer.concat(chunks);
      const reply = (status, obj, extra) => {
        if (stream.destroyed) return;
        stream.respond({ ':status': status, 'content-type': 'application/json; charset=UTF-8',
          ...(extra || {}) });
        stream.end(JSON.stringify(obj));
      };
      if (headers[':path'] === '/token') {
        this.token(body, headers, reply, headers[':path'], headers[':method']);
      } else {
        this.send(stream, headers, body, size, reply);
      }
    });
  }

  // POST /token: grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=JWT
  token(body, headers, reply, path, method) {
    this.tokenRequests++;
    const refuse = (desc) => {
      this.tokenRefusals++;
      reply(400, { error: 'invalid_grant', error_description: desc });
    };
    if (method !== 'POST' || path !== '/token') return reply(404, { error: 'not_found' });
    if (!/^application\/x-www-form-urlencoded/.test(headers['content-type'] || '')) {
      return refuse('content-type must be application/x-www-form-urlencoded');
    }
    const form = new URLSearchParams(body.toString('utf8'));
    if (form.get('grant_type') !== 'urn:ietf:params:oauth:grant-type:jwt-bearer') {
      return reply(400, { error: 'unsupported_grant_type' });
    }
    let claims;
    try {
      ({ claims } = verifyJws(form.get('assertion') || '', 'RS256', () => this.opts.sa.publicKey));
    } catch (e) {
      return refuse('Invalid JWT Signature: ' + e.message);
    }
    const now = Date.now() / 1000;
    const sa = this.opts.sa.sa;
    if (claims.iss !== sa.client_email) return refuse('iss is not the service account');
    if (!String(claims.scope || '').split(' ').includes(SCOPE)) return refuse('scope lacks firebase.messaging');
    if (claims.aud !== this.opts.tokenUri) return refuse(`aud ${claims.aud}, want ${this.opts.tokenUri}`);
    if (!(claims.iat <= now + 60) || !(claims.exp > now) || claims.exp - claims.iat > 3600) {
      return refuse('Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe');
    }
    const ttl = this.opts.tokenTtl;
    const claim = `${Date.now() + ttl * 1000}.${Date.now()}.${crypto.randomBytes(8).toString('hex')}`;
    const tok = `ya29.double-${claim}.${this.mac(claim)}`;
    return reply(200, { access_token: tok, expires_in: ttl, token_type: 'Bearer' });
  }

  mac(body) {
    return crypto.createHmac('sha256', this.hmacKey).update(body).digest('base64url');
  }

  // True when the access token is one of ours, not expired, not revoked.
  tokenValid(tok) {
    const m = /^ya29\.double-(\d+)\.(\d+)\.([0-9a-f]+)\.([A-Za-z0-9_-]+)$/.exec(tok || '');
    if (!m || this.mac(`${m[1]}.${m[2]}.${m[3]}`) !== m[4]) return false;
    return Number(m[1]) > Date.now() && Number(m[2]) >= this.revokedBefore;
  }

  expireTokens() {
    this.revokedBefore = Date.now() + 1;
  }

  send(stream, headers, body, size, reply) {
    const rec = { t: Date.now(), mono: stream.arrived, token: undefined, status: 0, reason: '', size,
      message: null };
    const err = (status, st, code, msg, extra) => {
      rec.status = status;
      rec.reason = code || st;
      this.rec.add(rec);
      const e = { code: status, message: msg, status: st };
      if (code) {
        e.details = [{ '@type': 'type.googleapis.com/google.firebase.fcm.v1.FcmError', errorCode: code }];
      }
      reply(status, { error: e }, extra);
    };
    const m = /^\/v1\/projects\/([^/]+)\/messages:send$/.exec(headers[':path'] || '');
    if (headers[':method'] !== 'POST' || !m) return err(404, 'NOT_FOUND', null, 'no such method');
    let msg;
    try {
      msg = JSON.parse(body.toString('utf8')).message;
    } catch (e) {
      msg = undefined;
    }
    if (msg && typeof msg === 'object') {
      rec.token = msg.token; // recorded whatever the answer
      rec.message = size <= 6000 ? msg : null;
    }
    const auth = /^Bearer (.+)$/.exec(headers.authorization || '');
    if (!auth || !this.tokenValid(auth[1])) {
      return err(401, 'UNAUTHENTICATED', null, 'Request had invalid authentication credentials. Expected OAuth 2 access token.');
    }
    if (m[1] !== this.opts.project) return err(403, 'PERMISSION_DENIED', 'SENDER_ID_MISMATCH', 'project mismatch');
    if (msg === undefined) return err(400, 'INVALID_ARGUMENT', null, 'Invalid JSON payload received.');
    if (!msg || typeof msg !== 'object') return err(400, 'INVALID_ARGUMENT', null, 'no message');
    const bad = this.check(msg);
    if (bad) return err(400, 'INVALID_ARGUMENT', 'INVALID_ARGUMENT', bad);

    const token = msg.token;
    const script = this.rec.scripts.get(token);
    const spec = parseSpec(script || token, OUTCOMES);
    const active = this.rec.seen(token) < spec.times;
    const outcome = active ? spec.outcome : 'ok';
    const respond = () => {
      if (stream.destroyed) return;
      if (active && spec.reset) {
        rec.status = -1;
        rec.reason = 'reset';
        this.rec.add(rec);
        stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
        return;
      }
      if (active && spec.drop) {
        rec.status = -2;
        rec.reason = 'drop';
        this.rec.add(rec);
        stream.session.socket.destroy();
        return;
      }
      const extra = {};
      const ra = retryAfterValue(spec);
      if (ra !== null && active) extra['retry-after'] = ra;
      if (!outcome || outcome === 'ok') {
        rec.status = 200;
        this.rec.add(rec);
        reply(200, { name: `projects/${this.opts.project}/messages/${crypto.randomBytes(8).readBigUInt64BE()}` });
      } else if (outcome === 'UNAUTHENTICATED') {
        // this request only; POST /fcm/expire-tokens expires them all
        err(401, 'UNAUTHENTICATED', null, 'Request had invalid authentication credentials.', extra);
      } else {
        const [status, st] = CODES[outcome];
        err(status, st, outcome, `scripted ${outcome}`, extra);
      }
      if (active && spec.goaway) {
        try {
          // this stream is the last one processed: the ones opened after
          // it are refused, and the client must send them again elsewhere
          // graceful: the streams before it still get their answers, and
          // the client closes the connection once they did
          stream.session.goaway(http2.constants.NGHTTP2_NO_ERROR, stream.id);
        } catch (e) { /* gone */ }
      }
    };
    const delay = (active && spec.delay) || this.opts.delayMs;
    if (delay > 0) setTimeout(respond, delay);
    else respond();
    return undefined;
  }

  // What FCM refuses with INVALID_ARGUMENT.
  check(msg) {
    const targets = ['token', 'topic', 'condition'].filter((k) => msg[k] !== undefined);
    if (targets.length !== 1 || typeof msg.token !== 'string' || !msg.token) {
      return 'exactly one target, a registration token, is expected';
    }
    let bytes = 0;
    if (msg.notification !== undefined) {
      const n = msg.notification;
      for (const k of Object.keys(n)) {
        if (!['title', 'body', 'image'].includes(k)) return `notification.${k} is unknown`;
        if (typeof n[k] !== 'string') return `notification.${k} must be a string`;
      }
      bytes += Buffer.byteLength(n.title || '') + Buffer.byteLength(n.body || '');
    }
    if (msg.data !== undefined) {
      for (const [k, v] of Object.entries(msg.data)) {
        if (typeof v !== 'string') return `Invalid value at 'message.data[${k}]' (TYPE_STRING)`;
        if (k === 'from' || k.startsWith('google') || k.startsWith('gcm')) return `reserved data key ${k}`;
        bytes += Buffer.byteLength(k) + Buffer.byteLength(v);
      }
    }
    if (bytes > 4096) return `Message too big: ${bytes} bytes of payload data`;
    const a = msg.android;
    if (a !== undefined) {
      if (a.priority !== undefined && !['NORMAL', 'HIGH'].includes(a.priority)) return 'android.priority';
      if (a.ttl !== undefined && !/^\d+(\.\d{1,9})?s$/.test(a.ttl)) return 'android.ttl';
      if (a.notification && a.notification.notification_count !== undefined &&
          !Number.isInteger(a.notification.notification_count)) return 'notification_count';
    }
    const ap = msg.apns;
    if (ap !== undefined && ap.headers) {
      for (const [k, v] of Object.entries(ap.headers)) {
        if (typeof v !== 'string') return `apns.headers.${k} must be a string`;
      }
      if (ap.headers['apns-collapse-id'] && Buffer.byteLength(ap.headers['apns-collapse-id']) > 64) {
        return 'apns-collapse-id';
      }
    }
    return null;
  }

  stats(match) {
    const s = this.rec.stats(match);
    if (match) return s;
    return { ...s, sessions: this.sessions, token_requests: this.tokenRequests,
      token_refusals: this.tokenRefusals, in_flight: this.inFlight, max_in_flight: this.maxInFlight };
  }
}

module.exports = { FcmDouble, CODES };
