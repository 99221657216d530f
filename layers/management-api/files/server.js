'use strict';
// Management API of the devpod: health, supervisord program states and
// Prometheus metrics. Plain Node.js (no npm dependencies): it talks to
// supervisord's XML-RPC interface over its unix socket, so it needs neither
// supervisorctl nor a config file, and gets typed fields back.
//
// Environment:
//   PORT (9090), HOST (0.0.0.0)
//   SUPERVISOR_SOCKET (/run/supervisor.sock)
//   MANAGEMENT_API_TOKEN_FILE (/run/composer/management-api/token), read once
//   at start; else MANAGEMENT_API_TOKEN. With a token, every path but
//   /health needs "Authorization: Bearer <token>".

const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');

const STARTED = Date.now();

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

function supervisorCall(socketPath, method, timeoutMs = 3000) {
  const body = `<?xml version="1.0"?>\n<methodCall><methodName>${method}</methodName><params></params></methodCall>\n`;
  return new Promise((resolve, reject) => {
    const req = http.request({
      socketPath,
      path: '/RPC2',
      method: 'POST',
      headers: { 'Content-Type': 'text/xml', 'Content-Length': Buffer.byteLength(body) },
      timeout: timeoutMs,
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        if (res.statusCode !== 200) {
          reject(new Error(`supervisord answered HTTP ${res.statusCode}`));
          return;
        }
        try {
          resolve(parseXmlRpcResponse(Buffer.concat(chunks).toString('utf8')));
        } catch (err) {
          reject(err);
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error('supervisord did not answer in time')));
    req.on('error', reject);
    req.end(body);
  });
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

function loadToken(env) {
  const file = env.MANAGEMENT_API_TOKEN_FILE || '/run/composer/management-api/token';
  let token = '';
  try {
    token = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if (err.code !== 'ENOENT') throw err;
    token = env.MANAGEMENT_API_TOKEN || '';
  }
  return token.replace(/[\r\n]+$/, '');
}

// Constant-time: both sides hashed to the same length before comparing.
function tokenMatches(header, token) {
  const match = /^Bearer\s+(.+)$/.exec(header || '');
  const given = crypto.createHash('sha256').update(match ? match[1].trim() : '').digest();
  const want = crypto.createHash('sha256').update(token).digest();
  return crypto.timingSafeEqual(given, want) && match !== null;
}

// --- handlers ----------------------------------------------------------------

function send(res, status, body, type = 'application/json') {
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

function createServer({ token = '', socketPath = '/run/supervisor.sock' } = {}) {
  const listProcesses = async () =>
    (await supervisorCall(socketPath, 'supervisor.getAllProcessInfo')).map(describeProcess);

  return http.createServer(async (req, res) => {
    const path = new URL(req.url, 'http://localhost').pathname;
    try {
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.setHeader('Allow', 'GET, HEAD');
        send(res, 405, { error: 'method not allowed' });
        return;
      }
      if (path === '/health') {
        send(res, 200, { status: 'healthy', timestamp: new Date().toISOString(), uptime: uptimeSeconds() });
        return;
      }
      if (token && !tokenMatches(req.headers.authorization, token)) {
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
    } catch (err) {
      send(res, 500, { error: err.message });
    }
  });
}

function main() {
  const env = process.env;
  const token = loadToken(env);
  const server = createServer({ token, socketPath: env.SUPERVISOR_SOCKET || '/run/supervisor.sock' });
  const port = parseInt(env.PORT || '9090', 10);
  const host = env.HOST || '0.0.0.0';
  server.listen(port, host, () => {
    const addr = server.address();
    console.log(`management-api listening on ${addr.address}:${addr.port}` +
      (token ? ' (token required)' : ' (no token: open)'));
  });
  const stop = () => server.close(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

module.exports = { parseXmlRpcResponse, describeProcess, tokenMatches, metricsText, createServer, loadToken };

if (require.main === module) main();
