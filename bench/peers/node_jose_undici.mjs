// Peer B for clerk-gateway's benchmark: the same proxy job on Node.js, one process.
//
// node:http server + jose (RS256 verification with the PEM key, imported once with importSPKI)
// + an undici Pool of keep-alive connections to the upstream. Like the naive Python peer it does
// what the gateway's Hasura route does in admin_secret mode — verify the bearer token and its
// issuer, forward the body with the admin secret and the user's id, relay the answer — and no more
// (no token cache, no metrics). It shows where a well-known non-Python stack lands on the same box.
//
// Configured by environment (bench.py sets it): PEER_PORT, PEER_UPSTREAM, PEER_PEM_FILE,
// PEER_ISSUER, PEER_ADMIN_SECRET. bench.py copies this file next to the node_modules it installs
// under bench/.work/node, so that the pinned jose and undici from bench/peers/package.json resolve.

import http from 'node:http';
import { readFileSync } from 'node:fs';
import { importSPKI, jwtVerify } from 'jose';
import { Pool } from 'undici';

const port = Number(process.env.PEER_PORT ?? 8083);
const upstream = process.env.PEER_UPSTREAM ?? 'http://127.0.0.1:8081';
const issuer = process.env.PEER_ISSUER ?? 'https://clerk.bench.local';
const adminSecret = process.env.PEER_ADMIN_SECRET ?? 'bench-secret';
const maxBody = 1024 * 1024;

const key = await importSPKI(readFileSync(process.env.PEER_PEM_FILE, 'utf8'), 'RS256');
const pool = new Pool(upstream, { connections: 128, pipelining: 1, keepAliveTimeout: 30_000 });

function reply(res, status, payload) {
  const body = JSON.stringify(payload);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > maxBody) {
        reject(new Error('body too large'));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

async function handle(req, res) {
  if (req.method !== 'POST' || req.url !== '/hasura/v1/graphql') {
    reply(res, 404, { error: 'not_found' });
    return;
  }
  const authorization = req.headers.authorization ?? '';
  if (!authorization.startsWith('Bearer ')) {
    reply(res, 401, { error: 'unauthorized', reason: 'missing_token' });
    return;
  }
  let payload;
  try {
    ({ payload } = await jwtVerify(authorization.slice(7), key, {
      issuer,
      algorithms: ['RS256'],
      clockTolerance: 5,
    }));
  } catch {
    reply(res, 401, { error: 'unauthorized', reason: 'invalid_token' });
    return;
  }
  const body = await readBody(req);
  const answer = await pool.request({
    path: '/v1/graphql',
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'x-hasura-admin-secret': adminSecret,
      'x-hasura-role': 'user',
      'x-hasura-user-id': String(payload.sub),
    },
    body,
  });
  const data = Buffer.from(await answer.body.arrayBuffer());
  res.writeHead(answer.statusCode, {
    'content-type': answer.headers['content-type'] ?? 'application/json',
    'content-length': data.length,
  });
  res.end(data);
}

const server = http.createServer((req, res) => {
  handle(req, res).catch(() => {
    if (!res.headersSent) reply(res, 502, { error: 'bad_gateway' });
    else res.destroy();
  });
});
server.keepAliveTimeout = 30_000;
server.listen(port, '127.0.0.1');

function shutdown() {
  server.close();
  pool.close().finally(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
