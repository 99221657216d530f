'use strict';
// Management API of the devpod: health, supervisord program states and
// Prometheus metrics. Plain Node.js (no npm dependencies): it talks to
// supervisord's XML-RPC interface over its unix socket, so it needs neither
// supervisorctl nor a config file, and gets typed fields back.
//
// The port is published to the network, so the server is written to survive
// whatever a client sends: every request is answered or dropped inside its
// own error handler, the HTTP parser's limits and timeouts are tight, and
// nothing but /health is served without the bearer token. See README.md.
//
// Environment:
//   PORT (9090), BIND_ADDRESS (0.0.0.0)
//   SUPERVISOR_SOCKET (/run/supervisor.sock)
//   MANAGEMENT_API_TOKEN_FILE (/run/composer/management-api/token): every
//   path but /health needs "Authorization: Bearer <its content>"; without the
//   file (or with an empty one) they answer 503, never open.

const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');

const STARTED = Date.now();
const DEFAULT_TOKEN_FILE = '/run/composer/management-api/token';

// One place for every limit; README.md lists them.
const LIMITS = Object.freeze({
  maxHeaderSize: 8 * 1024,       // request line + headers, bytes (else 431)
  headersTimeout: 10_000,        // ms to receive the whole request head (slowloris)
  requestTimeout: 15_000,        // ms to receive the whole request
  keepAliveTimeout: 5_000,       // ms an idle keep-alive connection stays open
  socketTimeout: 30_000,         // ms without any traffic while a response is pending
  checkInterval: 1_000,          // ms between node's checks of the two timeouts above
  maxConnections: 128,           // more are closed at once, not queued
  maxRequestsPerSocket: 100,     // then the connection is closed
  tokenMaxBytes: 4096,           // a bigger token file is refused
  supervisorTimeout: 5_000,      // ms for a whole XML-RPC call
  supervisorMaxBytes: 8 * 1024 * 1024,
});

// --- logging ----------------------------------------------------------------

// Clients decide how many bad requests arrive: at most `perMinute` lines a
// minute reach the log (supervisord's log file), then one count of the rest.
function rateLimitedLog(perMinute = 30, write = (line) => process.stderr.write(line + '\n')) {
  let windowStart = Date.now();
  let written = 0;
  let suppressed = 0;
  return (message) => {
    const now = Date.now();
    if (now - windowStart >= 60_000) {
      if (suppressed) write(`management-api: ${suppressed} more messages suppressed`);
      windowStart = now;
      written = 0;
      suppressed = 0;
    }
    if (written < perMinute) {
      written++;
      write(`management-api: ${message}`);
    } else {
      suppressed++;
    }
  };
}

// --- XML-RPC (the subset supervisord's responses use) -----------------------

const ENTITIES = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

function unescapeXml(text) {
  return text.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|[a-z]+);/g, (whole, name) => {
    if (name[0] === '#') {
      const code = name[1] === 'x' ? parseInt(name.slice(2), 16) : parseInt(name.slice(1), 10);
      return String.fromCodePoint(code);
    }
    return Object.prototype.hasOwnProperty.call(ENTITIES, name) ? ENTITIES[name] : whole;
  });
}

// Tokens: {tag, close, empty} for elements, {text} for character data.
function tokenize(xml) {
  const tokens = [];
  const re = /<\?[^>]*\?>|<!--[\s\S]*?-->|<(\/?)([A-Za-z_][\w.:-]*)[^>]*?(\/?)>|([^<]+)/g;
  let m;
  while ((m = re.exec(xml)) !== null) {
    if (m[2] !== undefined) tokens.push({ tag: m[2], close: m[1] === '/', empty: m[3] === '/' });
    else if (m[4] !== undefined) tokens.push({ text: unescapeXml(m[4]) });
  }
  return tokens;
}

function parseXmlRpcResponse(xml) {
  const tokens = tokenize(xml);
  let i = 0;
  const skipText = () => { while (i < tokens.length && tokens[i].text !== undefined && !tokens[i].text.trim()) i++; };
  const expectOpen = (tag) => {
    skipText();
    const t = tokens[i++];
    if (!t || t.tag !== tag || t.close) throw new Error(`XML-RPC: expected <${tag}>`);
    return t;
  };
  const expectClose = (tag) => {
    skipText();
    const t = tokens[i++];
    if (!t || t.tag !== tag || !t.close) throw new Error(`XML-RPC: expected </${tag}>`);
  };
  const readText = (tag) => {
    let text = '';
    while (i < tokens.length && tokens[i].text !== undefined) text += tokens[i++].text;
    expectClose(tag);
    return text;
  };
  function parseValue() {
    const open = expectOpen('value');
    if (open.empty) return '';
    // An untyped <value>text</value> is a string.
    if (tokens[i] && tokens[i].text !== undefined && tokens[i + 1] && tokens[i + 1].close) {
      return readText('value');
    }
    skipText();
    const t = tokens[i++];
    if (t && t.tag === 'value' && t.close) return '';
    let result;
    if (t.empty) {
      result = t.tag === 'nil' ? null : t.tag === 'array' ? [] : t.tag === 'struct' ? {} : '';
    } else if (t.tag === 'string' || t.tag === 'base64' || t.tag === 'dateTime.iso8601') {
      result = readText(t.tag);
    } else if (t.tag === 'int' || t.tag === 'i4' || t.tag === 'i8') {
      result = parseInt(readText(t.tag).trim(), 10);
    } else if (t.tag === 'double') {
      result = parseFloat(readText(t.tag).trim());
    } else if (t.tag === 'boolean') {
      result = readText(t.tag).trim() === '1';
    } else if (t.tag === 'array') {
      const data = expectOpen('data');
      result = [];
      if (!data.empty) {
        for (;;) {
          skipText();
          if (tokens[i] && tokens[i].tag === 'data' && tokens[i].close) { i++; break; }
          result.push(parseValue());
        }
      }
      expectClose('array');
    } else if (t.tag === 'struct') {
      result = {};
      for (;;) {
        skipText();
        if (tokens[i] && tokens[i].tag === 'struct' && tokens[i].close) { i++; break; }
        expectOpen('member');
        expectOpen('name');
        const name = readText('name');
        result[name] = parseValue();
        expectClose('member');
      }
    } else {
      throw new Error(`XML-RPC: unsupported type <${t.tag}>`);
    }
    expectClose('value');
    return result;
  }

  expectOpen('methodResponse');
  skipText();
  if (tokens[i] && tokens[i].tag === 'fault') {
    i++;
    const fault = parseValue();
    const err = new Error(`XML-RPC fault ${fault.faultCode}: ${fault.faultString}`);
    err.fault = fault;
    throw err;
  }
  expectOpen('params');
  expectOpen('param');
  return parseValue();
}

function supervisorCall(socketPath, method, limits = LIMITS) {
  const body = `<?xml version="1.0"?>\n<methodCall><methodName>${method}</methodName><params></params></methodCall>\n`;
  return new Promise((resolve, reject) => {
    let settled = false;
    const finish = (err, value) => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      if (err) {
        req.destroy();
        reject(err);
      } else {
        resolve(value);
      }
    };
    // A whole-call deadline: the socket timeout alone would let a trickle of
    // bytes keep the call (and the client waiting on it) alive.
    const deadline = setTimeout(() => finish(new Error('supervisord did not answer in time')),
      limits.supervisorTimeout);
    const req = http.request({
      socketPath,
      path: '/RPC2',
      method: 'POST',
      headers: { 'Content-Type': 'text/xml', 'Content-Length': Buffer.byteLength(body) },
    }, (res) => {
      const chunks = [];
      let size = 0;
      res.on('data', (c) => {
        size += c.length;
        if (size > limits.supervisorMaxBytes) finish(new Error('supervisord answer too large'));
        else chunks.push(c);
      });
      // Without these a connection cut mid-answer is an uncaught 'error'.
      res.on('error', (err) => finish(err));
      res.on('aborted', () => finish(new Error('supervisord closed the connection')));
      res.on('end', () => {
        if (res.statusCode !== 200) {
          finish(new Error(`supervisord answered HTTP ${res.statusCode}`));
          return;
        }
        try {
          finish(null, parseXmlRpcResponse(Buffer.concat(chunks).toString('utf8')));
        } catch (err) {
          finish(err);
        }
      });
    });
    req.on('error', (err) => finish(err));
    req.end(body);
  });
}

// Concurrent callers share one call in flight, so a burst of requests makes
// one XML-RPC call, not one each.
function coalesce(fn) {
  let inflight = null;
  return () => {
    if (!inflight) inflight = fn().finally(() => { inflight = null; });
    return inflight;
  };
}

// supervisord's process info -> what /services returns.
function describeProcess(p) {
  const name = p.group && p.group !== p.name ? `${p.group}:${p.name}` : p.name;
  const running = p.statename === 'RUNNING';
  return {
    name,
    group: p.group,
    state: p.statename,
    running,
    pid: p.pid || null,
    uptime: running && p.start ? Math.max(0, p.now - p.start) : 0,
    exitstatus: p.exitstatus,
    description: p.description,
  };
}

// --- auth --------------------------------------------------------------------

// The token file is read on every request that needs it (one small read), so
// a token written or rotated by the start-up hook counts without a restart.
// '' means no usable token: missing, empty, unreadable or oversized.
async function readToken(file, log = () => {}, maxBytes = LIMITS.tokenMaxBytes) {
  let handle;
  try {
    handle = await fs.promises.open(file, 'r');
    const buf = Buffer.alloc(maxBytes + 1);
    const { bytesRead } = await handle.read(buf, 0, buf.length, 0);
    if (bytesRead > maxBytes) {
      log(`token file ${file} is larger than ${maxBytes} bytes: ignored`);
      return '';
    }
    return buf.toString('utf8', 0, bytesRead).trim();
  } catch (err) {
    if (err.code !== 'ENOENT') log(`token file ${file}: ${err.message}`);
    return '';
  } finally {
    if (handle) await handle.close().catch(() => {});
  }
}

// Constant time: both sides are hashed to 32 bytes, so timingSafeEqual always
// compares equal-length buffers and neither the length nor a prefix of the
// token leaks through the answer's timing.
function tokenMatches(header, token) {
  const match = /^Bearer +(\S+) *$/i.exec(typeof header === 'string' ? header : '');
  const given = crypto.createHash('sha256').update(match ? match[1] : '').digest();
  const want = crypto.createHash('sha256').update(token).digest();
  return crypto.timingSafeEqual(given, want) && match !== null && token !== '';
}

// --- handlers ----------------------------------------------------------------

function send(res, status, body, type = 'application/json') {
  // The client may be gone, or a handler may already have answered.
  if (res.headersSent || res.writableEnded || res.destroyed) return;
  const text = type === 'application/json' ? JSON.stringify(body) + '\n' : body;
  res.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

function uptimeSeconds() {
  return (Date.now() - STARTED) / 1000;
}

function escapeLabel(value) {
  return String(value).replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function metricsText(processes, supervisorUp) {
  const mem = process.memoryUsage();
  const lines = [
    '# HELP management_api_uptime_seconds Seconds since the management API started.',
    '# TYPE management_api_uptime_seconds gauge',
    `management_api_uptime_seconds ${uptimeSeconds()}`,
    '# HELP supervisord_up 1 if supervisord answered over its socket.',
    '# TYPE supervisord_up gauge',
    `supervisord_up ${supervisorUp ? 1 : 0}`,
    '# HELP supervisord_process_up 1 if the supervisord program is RUNNING.',
    '# TYPE supervisord_process_up gauge',
  ];
  for (const p of processes) {
    lines.push(`supervisord_process_up{name="${escapeLabel(p.name)}",state="${escapeLabel(p.state)}"} ${p.running ? 1 : 0}`);
  }
  lines.push('# HELP supervisord_process_uptime_seconds Seconds the program has been running.');
  lines.push('# TYPE supervisord_process_uptime_seconds gauge');
  for (const p of processes) {
    lines.push(`supervisord_process_uptime_seconds{name="${escapeLabel(p.name)}"} ${p.uptime}`);
  }
  lines.push(
    '# HELP process_resident_memory_bytes Resident memory of the management API.',
    '# TYPE process_resident_memory_bytes gauge',
    `process_resident_memory_bytes ${mem.rss}`,
    '# HELP nodejs_heap_used_bytes V8 heap in use.',
    '# TYPE nodejs_heap_used_bytes gauge',
    `nodejs_heap_used_bytes ${mem.heapUsed}`,
  );
  return lines.join('\n') + '\n';
}

// A request carries a body if it says so; none is ever read.
function hasBody(req) {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

function requestPath(url) {
  try {
    return new URL(url, 'http://localhost').pathname;
  } catch {
    return null; // e.g. '//' or '//host:port': not a path this server serves
  }
}

const STATUS_FOR_CLIENT_ERROR = { HPE_HEADER_OVERFLOW: 431, ERR_HTTP_REQUEST_TIMEOUT: 408 };

// What node's parser rejects (bad method, bad bytes, too big, too slow) comes
// here, not to the request handler: answer with a bare status and close.
function onClientError(err, socket, log) {
  const peer = socket.remoteAddress || '?';
  if (err.code !== 'ECONNRESET') log(`client error from ${peer}: ${err.code || err.message}`);
  if (err.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy();
    return;
  }
  const status = STATUS_FOR_CLIENT_ERROR[err.code] || 400;
  socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nConnection: close\r\n` +
    'Content-Length: 0\r\n\r\n', () => socket.destroy());
}

function createServer({ tokenFile = DEFAULT_TOKEN_FILE, socketPath = '/run/supervisor.sock',
  limits = LIMITS, log = rateLimitedLog() } = {}) {
  const listProcesses = coalesce(async () =>
    (await supervisorCall(socketPath, 'supervisor.getAllProcessInfo', limits)).map(describeProcess));

  async function handle(req, res) {
    res.setHeader('Cache-Control', 'no-store');
    res.setHeader('X-Content-Type-Options', 'nosniff');
    if (hasBody(req)) {
      // Bodies are never read: the connection ends with the answer, so the
      // unread bytes cannot be taken for the next request.
      res.setHeader('Connection', 'close');
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      send(res, 405, { error: 'method not allowed' });
      return;
    }
    if (hasBody(req)) {
      send(res, 413, { error: 'a request body is not accepted' });
      return;
    }
    const path = requestPath(req.url);
    if (path === null) {
      send(res, 400, { error: 'bad request path' });
      return;
    }
    if (path === '/health') {
      send(res, 200, { status: 'healthy', timestamp: new Date().toISOString(), uptime: uptimeSeconds() });
      return;
    }
    const token = await readToken(tokenFile, log, limits.tokenMaxBytes);
    if (!token) {
      send(res, 503, { error: 'no API token configured: only /health is served' });
      return;
    }
    // Two Authorization headers are ambiguous (node would keep the first).
    const authorization = req.headersDistinct ? req.headersDistinct.authorization : undefined;
    if ((authorization && authorization.length > 1) || !tokenMatches(req.headers.authorization, token)) {
      res.setHeader('WWW-Authenticate', 'Bearer');
      send(res, 401, { error: 'unauthorized' });
      return;
    }
    if (path === '/services') {
      let processes;
      try {
        processes = await listProcesses();
      } catch (err) {
        send(res, 503, { error: `supervisord unavailable: ${err.message}` });
        return;
      }
      send(res, 200, {
        services: processes,
        running: processes.filter((p) => p.running).length,
        total: processes.length,
      });
      return;
    }
    if (path === '/metrics') {
      let processes = [];
      let up = true;
      try {
        processes = await listProcesses();
      } catch (err) {
        up = false;
      }
      send(res, 200, metricsText(processes, up), 'text/plain; version=0.0.4; charset=utf-8');
      return;
    }
    send(res, 404, { error: 'not found', paths: ['/health', '/services', '/metrics'] });
  }

  function onRequest(req, res) {
    // A client that goes away mid-answer is its own business, not a crash.
    req.on('error', () => {});
    res.on('error', () => {});
    handle(req, res).catch((err) => {
      log(`internal error on ${req.method} ${String(req.url).slice(0, 200)}: ${err && err.stack}`);
      if (res.headersSent) res.destroy();
      else send(res, 500, { error: 'internal error' });
    });
  }

  const server = http.createServer({
    maxHeaderSize: limits.maxHeaderSize,
    headersTimeout: limits.headersTimeout,
    requestTimeout: limits.requestTimeout,
    connectionsCheckingInterval: limits.checkInterval,
    requireHostHeader: true,
  }, onRequest);
  // Set as properties too: node 18 takes only some of them as options.
  server.headersTimeout = limits.headersTimeout;
  server.requestTimeout = limits.requestTimeout;
  server.keepAliveTimeout = limits.keepAliveTimeout;
  server.maxRequestsPerSocket = limits.maxRequestsPerSocket;
  server.maxConnections = limits.maxConnections;
  server.setTimeout(limits.socketTimeout); // no 'timeout' listener: the socket is destroyed
  // Expect: 100-continue gets no "100 Continue": the body would be refused anyway.
  server.on('checkContinue', onRequest);
  server.on('clientError', (err, socket) => onClientError(err, socket, log));
  // CONNECT would otherwise leave the raw socket to us; refuse and close it.
  server.on('connect', (req, socket) => {
    socket.on('error', () => {});
    socket.end('HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, HEAD\r\nConnection: close\r\n' +
      'Content-Length: 0\r\n\r\n', () => socket.destroy());
  });
  server.on('drop', (data) => log(`connection from ${data && data.remoteAddress} dropped: ` +
    `${limits.maxConnections} connections open`));
  return server;
}

// --- process -----------------------------------------------------------------

// Errors of one connection that escaped every handler: the server's own state
// is intact, so it logs and goes on. Anything else leaves the process in an
// unknown state: it exits and supervisord (autorestart) starts a clean one.
const CONNECTION_ERRORS = new Set([
  'ECONNRESET', 'EPIPE', 'ECONNABORTED', 'ETIMEDOUT', 'ECANCELED',
  'ERR_STREAM_DESTROYED', 'ERR_STREAM_WRITE_AFTER_END', 'ERR_STREAM_PREMATURE_CLOSE',
  'ERR_HTTP_HEADERS_SENT', 'ERR_HTTP_REQUEST_TIMEOUT',
]);

function installCrashGuards() {
  const onFatal = (kind) => (err) => {
    const code = err && err.code;
    const survivable = CONNECTION_ERRORS.has(code) || (typeof code === 'string' && code.startsWith('HPE_'));
    console.error(`management-api: ${kind}${survivable ? ' (one connection; going on)' : ''}: ` +
      `${(err && err.stack) || err}`);
    if (!survivable) process.exit(1);
  };
  process.on('uncaughtException', onFatal('uncaught exception'));
  process.on('unhandledRejection', onFatal('unhandled rejection'));
}

function parsePort(text) {
  const port = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!(port >= 0 && port <= 65535)) throw new Error(`PORT=${JSON.stringify(text)} is not a port number`);
  return port;
}

function main() {
  const env = process.env;
  installCrashGuards();
  let port;
  try {
    port = parsePort(env.PORT || '9090');
  } catch (err) {
    console.error(`management-api: ${err.message}`);
    process.exit(2);
  }
  const host = env.BIND_ADDRESS || '0.0.0.0';
  const tokenFile = env.MANAGEMENT_API_TOKEN_FILE || DEFAULT_TOKEN_FILE;
  const server = createServer({ tokenFile, socketPath: env.SUPERVISOR_SOCKET || '/run/supervisor.sock' });
  let listening = false;
  server.on('error', (err) => {
    if (!listening) {
      console.error(`management-api: cannot listen on ${host}:${port}: ${err.message}`);
      process.exit(1);
    }
    // After start: e.g. EMFILE on accept. The server goes on.
    console.error(`management-api: server error: ${err.message}`);
  });
  server.listen(port, host, () => {
    listening = true;
    const addr = server.address();
    console.log(`management-api listening on ${addr.address}:${addr.port}`);
    if (!fs.existsSync(tokenFile)) {
      console.error(`management-api: no token file ${tokenFile}: every path but /health answers 503 ` +
        'until it exists');
    }
  });
  // The health check's own listener: a socket in a folder only the API's user (and root)
  // can enter. Any user of the devpod can open TCP connections to the public port until
  // maxConnections is reached; the probe that restarts the Pod must not share that pool.
  const healthSocket = env.HEALTH_SOCKET;
  let probe = null;
  if (healthSocket) {
    probe = createServer({ tokenFile, socketPath: env.SUPERVISOR_SOCKET || '/run/supervisor.sock' });
    try { fs.unlinkSync(healthSocket); } catch (err) { if (err.code !== 'ENOENT') throw err; }
    probe.on('error', (err) => console.error(`management-api: health socket ${healthSocket}: ${err.message}`));
    probe.listen(healthSocket, () => {
      fs.chmodSync(healthSocket, 0o600);
      console.log(`management-api health check on ${healthSocket}`);
    });
  }
  const stop = () => {
    if (probe) probe.close();
    server.close(() => process.exit(0));
    server.closeIdleConnections();
    // Connections still busy after a grace period are cut.
    setTimeout(() => { server.closeAllConnections(); process.exit(0); }, 2000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

module.exports = {
  parseXmlRpcResponse, describeProcess, tokenMatches, readToken, metricsText, createServer, LIMITS,
};

if (require.main === module) main();
