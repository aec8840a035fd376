// apns.js: the APNs double: Apple's HTTP/2 provider API over TLS (ALPN h2),
// token authentication (ES256 provider tokens verified with the test keys'
// public halves) or, on a server of its own (opts.certAuth), certificate
// authentication (a TLS client certificate the test CA signed), every request
// header and the payload size checked the way APNs documents them, and
// answers scripted per device token.
'use strict';

const http2 = require('http2');
const crypto = require('crypto');
const { verifyJws, parseSpec, retryAfterValue, Recorder, monoMs } = require('./common');

// Reason -> status, as Apple documents them.
const REASONS = {
  BadCollapseId: 400, BadDeviceToken: 400, BadExpirationDate: 400, BadMessageId: 400,
  BadPriority: 400, BadTopic: 400, DeviceTokenNotForTopic: 400, DuplicateHeaders: 400,
  IdleTimeout: 400, InvalidPushType: 400, MissingDeviceToken: 400, MissingTopic: 400,
  PayloadEmpty: 400, TopicDisallowed: 400, BadCertificate: 403, BadCertificateEnvironment: 403,
  ExpiredProviderToken: 403, Forbidden: 403, InvalidProviderToken: 403, MissingProviderToken: 403,
  BadPath: 404, MethodNotAllowed: 405, ExpiredToken: 410, Unregistered: 410,
  PayloadTooLarge: 413, TooManyProviderTokenUpdates: 429, TooManyRequests: 429,
  InternalServerError: 500, ServiceUnavailable: 503, Shutdown: 503,
};
const OUTCOMES = new Set(Object.keys(REASONS));
const PUSH_TYPES = new Set(['alert', 'background', 'location', 'voip', 'complication',
  'fileprovider', 'mdm', 'liveactivity', 'pushtotalk']);
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const TOKEN_RE = /^[0-9A-Za-z_-]{1,200}$/;
const MAX_BODY = 64 * 1024;
const TOKEN_MAX_AGE_S = 3600;
const TOKEN_UPDATE_MIN_S = 20 * 60;

class ApnsDouble {
  constructor(opts) {
    // { tls, keys, topics, delayMs, initialStreams, maxStreams, certAuth, caPem }
    this.opts = opts;
    this.rec = new Recorder(opts.certAuth ? 'apns-cert' : 'apns');
    this.jwtCache = new Map(); // jwt -> { kid, iat } verified
    this.kidState = new Map(); // kid -> { expiredAt } last ExpiredProviderToken we sent
    this.sessions = 0;
    this.jwtVerifies = 0;
    this.tokenUpdates = 0;
    this.inFlight = 0;
    this.maxInFlight = 0;
    this.certSessions = { verified: 0, untrusted: 0, none: 0 };
  }

  listen(port, host) {
    const o = this.opts;
    // Certificate authentication: the client certificate is asked for and
    // checked against the test CA, but an untrusted or missing one does not
    // fail the handshake: each request on the connection is refused with 403
    // and the reason Apple documents (BadCertificate: the certificate is
    // invalid; MissingProviderToken: no certificate and no provider token),
    // so a test can see what the client sent. APNs limits streams only until
    // a valid provider token was seen: a certificate connection gets them all.
    const certOpts = o.certAuth ? { requestCert: true, rejectUnauthorized: false, ca: [o.caPem] } : {};
    this.server = http2.createSecureServer({
      ...certOpts,
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
      settings: { maxConcurrentStreams: o.certAuth ? o.maxStreams : o.initialStreams },
    });
    this.server.on('session', (s) => this.onSession(s));
    this.server.on('stream', (st, h) => this.onStream(st, h));
    this.server.on('sessionError', () => {});
    return new Promise((res) => this.server.listen(port, host, res));
  }

  onSession(session) {
    this.sessions++;
    session.apns = { iat: 0, kid: null, updatedAt: 0, raised: false, cert: null };
    if (this.opts.certAuth) session.apns.cert = this.clientCert(session);
    session.on('error', (e) => {
      if (process.env.PUSH_DOUBLE_DEBUG) console.error('apns session error', e.code, e.message);
    });
    if (process.env.PUSH_DOUBLE_DEBUG) {
      session.on('goaway', (code) => console.error('apns session goaway from peer', code));
      session.on('close', () => console.error('apns session closed'));
      session.on('frameError', (t, c, id) => console.error('apns frame error', t, c, id));
    }
  }

  // What the TLS client certificate of a connection says: { present,
  // verified (signed by the test CA), subject ("CN=..., O=..."), error }.
  clientCert(session) {
    const c = { present: false, verified: false, subject: '', error: '' };
    try {
      const sock = session.socket;
      const pc = sock.getPeerCertificate();
      c.present = !!(pc && pc.subject);
      c.verified = c.present && sock.authorized === true;
      if (c.present) {
        c.subject = Object.entries(pc.subject)
          .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join('+') : v}`).join(', ');
      }
      c.error = sock.authorizationError ? String(sock.authorizationError) : '';
    } catch (e) {
      c.error = e.message;
    }
    if (c.verified) this.certSessions.verified++;
    else if (c.present) this.certSessions.untrusted++;
    else this.certSessions.none++;
    return c;
  }

  // Certificate authentication: { cert } or an APNs reason.
  certAuth(session) {
    const c = session.apns.cert;
    if (!c || !c.present) return { reason: 'MissingProviderToken', why: 'no client certificate' };
    if (!c.verified) return { reason: 'BadCertificate', why: c.error || 'not signed by the test CA' };
    return { cert: c };
  }

  // The provider token: { kid, iat } or an APNs reason.
  auth(headers) {
    const a = headers.authorization;
    if (!a) return { reason: 'MissingProviderToken' };
    const m = /^bearer (.+)$/i.exec(a);
    if (!m) return { reason: 'InvalidProviderToken' };
    let v = this.jwtCache.get(m[1]);
    if (!v) {
      try {
        this.jwtVerifies++;
        const { header, claims } = verifyJws(m[1], 'ES256', (hd, cl) => {
          const k = this.opts.keys.find((x) => x.kid === hd.kid);
          return k && k.team === cl.iss ? k.publicKey : null;
        });
        const extra = Object.keys(header).filter((k) => !['alg', 'kid', 'typ'].includes(k));
        if (!header.kid || extra.length) return { reason: 'InvalidProviderToken' };
        if (!Number.isInteger(claims.iat)) return { reason: 'InvalidProviderToken' };
        v = { kid: header.kid, iat: claims.iat };
      } catch (e) {
        return { reason: 'InvalidProviderToken', why: e.message };
      }
      if (this.jwtCache.size > 10000) this.jwtCache.clear();
      this.jwtCache.set(m[1], v);
    }
    const now = Date.now() / 1000;
    if (v.iat > now + 60) return { reason: 'InvalidProviderToken', why: 'iat in the future' };
    if (now - v.iat > TOKEN_MAX_AGE_S) return { reason: 'ExpiredProviderToken' };
    return v;
  }

  // A connection whose token changes more often than every 20 minutes gets
  // TooManyProviderTokenUpdates, unless we said the old one expired.
  tokenUpdate(session, v) {
    const s = session.apns;
    if (s.iat === v.iat && s.kid === v.kid) return null;
    const now = Date.now() / 1000;
    const ks = this.kidState.get(v.kid);
    const excused = ks && now - ks.expiredAt < 120;
    if (s.iat && now - s.updatedAt < TOKEN_UPDATE_MIN_S && !excused) {
      return 'TooManyProviderTokenUpdates';
    }
    if (s.iat) this.tokenUpdates++;
    s.iat = v.iat;
    s.kid = v.kid;
    s.updatedAt = now;
    return null;
  }

  check(headers, body, token) {
    if (headers[':method'] !== 'POST') return 'MethodNotAllowed';
    if (!/^\/3\/device\//.test(headers[':path'] || '')) return 'BadPath';
    if (!token) return 'MissingDeviceToken';
    if (!TOKEN_RE.test(token)) return 'BadDeviceToken';
    const topic = headers['apns-topic'];
    if (!topic) return 'MissingTopic';
    if (!this.opts.topics.some((t) => t === topic || (t.endsWith('*') && topic.startsWith(t.slice(0, -1))))) {
      return 'TopicDisallowed';
    }
    const type = headers['apns-push-type'];
    if (type !== undefined && !PUSH_TYPES.has(type)) return 'InvalidPushType';
    if (type === 'voip' && !topic.endsWith('.voip')) return 'InvalidPushType';
    const prio = headers['apns-priority'];
    if (prio !== undefined && !['10', '5', '1'].includes(prio)) return 'BadPriority';
    if (type === 'background' && prio === '10') return 'BadPriority';
    const exp = headers['apns-expiration'];
    if (exp !== undefined && !/^\d{1,12}$/.test(exp)) return 'BadExpirationDate';
    const cid = headers['apns-collapse-id'];
    if (cid !== undefined && Buffer.byteLength(cid) > 64) return 'BadCollapseId';
    const id = headers['apns-id'];
    if (id !== undefined && !UUID_RE.test(id)) return 'BadMessageId';
    for (const k of Object.keys(headers)) {
      if (Array.isArray(headers[k])) return 'DuplicateHeaders';
    }
    if (body.length === 0) return 'PayloadEmpty';
    if (body.length > (type === 'voip' ? 5120 : 4096)) return 'PayloadTooLarge';
    let p;
    try {
      p = JSON.parse(body.toString('utf8'));
    } catch (e) {
      return 'BadPayload';
    }
    if (!p || typeof p !== 'object' || !p.aps || typeof p.aps !== 'object') return 'BadPayload';
    if (type === 'background' && !p.aps['content-available']) return 'BadPayload';
    return null;
  }

  onStream(stream, headers) {
    stream.arrived = monoMs();
    const chunks = [];
    let size = 0;
    this.inFlight++;
    if (this.inFlight > this.maxInFlight) this.maxInFlight = this.inFlight;
    let done = false;
    const finish = () => {
      if (!done) {
        done = true;
        this.inFlight--;
      }
    };
    stream.on('close', () => {
      if (process.env.PUSH_DOUBLE_DEBUG && !stream.headersSent) {
        console.error('apns stream closed unanswered rst', stream.rstCode);
      }
      finish();
    });
    stream.on('error', (e) => {
      if (process.env.PUSH_DOUBLE_DEBUG) console.error('apns stream error', e.code);
    });
    stream.on('data', (c) => {
      size += c.length;
      if (size <= MAX_BODY) chunks.push(c);
    });
    stream.on('end', () => this.handle(stream, headers, Buffer.concat(chunks), size));
  }

  handle(stream, headers, body, size) {
    const session = stream.session;
    const token = decodeURIComponent((headers[':path'] || '').replace(/^\/3\/device\//, ''));
    const apnsId = headers['apns-id'] || crypto.randomUUID();
    const rec = {
      t: Date.now(), mono: stream.arrived, token, status: 0, reason: '', apns_id: apnsId,
      topic: headers['apns-topic'], push_type: headers['apns-push-type'],
      priority: headers['apns-priority'], expiration: headers['apns-expiration'],
      collapse_id: headers['apns-collapse-id'], size, iat: 0, kid: '',
      payload: size <= 6000 ? body.toString('utf8') : '',
      authorization: headers.authorization !== undefined,
    };
    if (this.opts.certAuth) {
      const c = session.apns.cert || {};
      rec.client_cert = !!c.verified;
      rec.client_cert_present = !!c.present;
      rec.client_subject = c.subject || '';
    }
    const answer = (status, reason, extra) => {
      rec.status = status;
      rec.reason = reason || '';
      this.rec.add(rec);
      const h = { ':status': status, 'apns-id': apnsId, ...(extra || {}) };
      if (!reason) {
        stream.respond(h, { endStream: true });
        return;
      }
      h['content-type'] = 'application/json';
      stream.respond(h);
      const b = { reason };
      if (status === 410) b.timestamp = Date.now() - 60000;
      stream.end(JSON.stringify(b));
    };

    if (stream.destroyed) return;
    // on a certificate connection the certificate authenticates (an
    // authorization header, which the client should not send, is ignored)
    const a = this.opts.certAuth ? this.certAuth(session) : this.auth(headers);
    if (a.reason) {
      if (a.reason === 'ExpiredProviderToken') this.noteExpired(headers);
      answer(REASONS[a.reason] || 403, a.reason);
      return;
    }
    if (!this.opts.certAuth) {
      rec.iat = a.iat;
      rec.kid = a.kid;
      const upd = this.tokenUpdate(session, a);
      if (upd) {
        answer(429, upd);
        return;
      }
    }
    if (!this.opts.certAuth && !session.apns.raised &&
        this.opts.maxStreams !== this.opts.initialStreams) {
      // APNs: one stream until a valid provider token was seen, then more
      session.apns.raised = true;
      try {
        session.settings({ maxConcurrentStreams: this.opts.maxStreams });
      } catch (e) { /* closing */ }
    }
    const bad = this.check(headers, body, token);
    if (bad) {
      answer(REASONS[bad] || 400, bad);
      return;
    }

    const script = this.rec.scripts.get(token);
    const spec = parseSpec(script || token, OUTCOMES);
    const seen = this.rec.seen(token);
    const active = seen < spec.times;
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
        session.socket.destroy();
        return;
      }
      if (!outcome || outcome === 'ok') {
        answer(200, '');
      } else {
        const extra = {};
        const ra = retryAfterValue(spec);
        if (ra !== null) extra['retry-after'] = ra;
        if (outcome === 'ExpiredProviderToken') this.noteExpired(headers, a.kid);
        answer(REASONS[outcome], outcome, extra);
      }
      if (active && spec.goaway) {
        try {
          // this stream is the last one processed: the ones opened after
          // it are refused, and the client must send them again elsewhere
          // graceful: the streams before it still get their answers, and
          // the client closes the connection once they did
          session.goaway(http2.constants.NGHTTP2_NO_ERROR, stream.id);
        } catch (e) { /* gone */ }
      }
    };
    const delay = (active && spec.delay) || this.opts.delayMs;
    if (delay > 0) setTimeout(respond, delay);
    else respond();
  }

  noteExpired(headers, kid) {
    let k = kid;
    if (!k) {
      try {
        k = JSON.parse(Buffer.from((headers.authorization || '').split(' ')[1].split('.')[0],
          'base64url')).kid;
      } catch (e) {
        return;
      }
    }
    this.kidState.set(k, { expiredAt: Date.now() / 1000 });
  }

  stats(match) {
    const s = this.rec.stats(match);
    if (match) return s;
    const out = { ...s, sessions: this.sessions, jwt_verifies: this.jwtVerifies,
      token_updates: this.tokenUpdates, in_flight: this.inFlight, max_in_flight: this.maxInFlight };
    if (this.opts.certAuth) out.cert_sessions = this.certSessions;
    return out;
  }
}

module.exports = { ApnsDouble, REASONS };
