// The real @apollo/client (what the fixture frontend ships) against the gateway's trusted-documents
// handling. Driven by tests/e2e/test_documents_npm.py:
//
//   node apollo_driver.mjs <scenario>
//
// Environment: DRIVER_URL (the GraphQL endpoint, e.g. http://127.0.0.1:8000/hasura/v1/graphql),
// DRIVER_TOKEN (sent as Authorization: Bearer), APOLLO_MANIFEST and CODEGEN_MANIFEST (paths of the
// manifests `npm run manifests` generated; the enforce scenarios read them), DRIVER_TIMEOUT_MS.
//
// The operations are the fixture's own src/*.graphql (one operation per file), parsed with gql.
// Scenarios:
//   apq               PersistedQueryLink({ sha256 }) (APQ, POST): a first client runs Users and the
//                     RenameUser mutation (each: hash only, PersistedQueryNotFound, retry with the text:
//                     registered); a second client (new cache, new link: a reload) runs both again: hash
//                     only, hits
//   apq-get           the same for ViewerProfile (a fragment) with useGETForHashedQueries: true: the
//                     hashed tries are GETs, the retry a POST (AC forces it). Another operation than
//                     `apq`'s, so that it misses first on a gateway whose APQ store `apq` filled
//   enforce-manifest  PersistedQueryLink(generatePersistedQueryIdsFromManifest(Apollo manifest)) from
//                     @apollo/persisted-query-lists: Users, ViewerProfile and RenameUser by id only
//   enforce-codegen   PersistedQueryLink({ generateHash }) looking the id up by operation name in
//                     codegen's persisted-documents.json (ids "sha256:<hex>"): Users and RenameUser
//   enforce-fulltext  a plain HttpLink: Users as full text (the text AC prints is the Apollo manifest body)
//   enforce-adhoc     AdHoc, a query in no manifest: once as full text (plain HttpLink), once through
//                     PersistedQueryLink({ sha256 }) (hash only; the refusal is not a
//                     PersistedQueryNotFound, so the link must not retry with the text)
//
// Output: one JSON object a line. {"event":"step","name":…} opens each part; every HTTP exchange is
// {"event":"request","n","method","path","has_query","query","operation_name","variables","extensions"}
// then {"event":"response","n","status","cache_control","body"}; each operation ends in
// {"event":"result","step","data"} or {"event":"error","step","name","message","errors","status"}.
// Exit 0 after {"event":"done"} however the gateway answered (the test asserts on the events), 1 on
// a bad invocation or a crash of the driver itself, 3 on DRIVER_TIMEOUT_MS (default 20000).
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { ApolloClient, ApolloLink, HttpLink, InMemoryCache, gql } from '@apollo/client';
import { PersistedQueryLink } from '@apollo/client/link/persisted-queries';
import { generatePersistedQueryIdsFromManifest } from '@apollo/persisted-query-lists';
import { Kind, parse } from 'graphql';

const here = path.dirname(fileURLToPath(import.meta.url));
const [scenario] = process.argv.slice(2);
const env = process.env;
const TIMEOUT_MS = Number(env.DRIVER_TIMEOUT_MS ?? 20000);

const out = (event, fields = {}) => process.stdout.write(JSON.stringify({ event, ...fields }) + '\n');

const watchdog = setTimeout(() => {
  out('timeout', { after_ms: TIMEOUT_MS });
  process.exit(3);
}, TIMEOUT_MS);

const sha256 = (text) => createHash('sha256').update(text, 'utf8').digest('hex');

// -- the frontend's operations --------------------------------------------------------------------

function operationName(document) {
  const operations = document.definitions.filter((d) => d.kind === Kind.OPERATION_DEFINITION);
  if (operations.length !== 1 || !operations[0].name) throw new Error('one named operation per document');
  return operations[0].name.value;
}

const OPERATIONS = Object.fromEntries(
  readdirSync(path.join(here, 'src'))
    .filter((file) => file.endsWith('.graphql'))
    .map((file) => gql(readFileSync(path.join(here, 'src', file), 'utf8')))
    .map((document) => [operationName(document), document]),
);
// Not in src/, so in no manifest: what an attacker (or an unreleased build) would send.
const AD_HOC = gql`
  query AdHoc {
    users(limit: 1000) {
      id
      name
      last_seen
    }
  }
`;

// -- the transport, observed -----------------------------------------------------------------------

let exchanges = 0;

function sentParams(url, init) {
  if ((init.method ?? 'GET').toUpperCase() !== 'GET') return JSON.parse(String(init.body ?? '{}'));
  const params = {};
  for (const [key, value] of url.searchParams) {
    params[key] = ['variables', 'extensions'].includes(key) ? JSON.parse(value) : value;
  }
  return params;
}

// The fetch HttpLink uses: logs what went out and what came back, changes nothing.
async function observedFetch(uri, init = {}) {
  const n = ++exchanges;
  const url = new URL(String(uri));
  const sent = sentParams(url, init);
  out('request', {
    n,
    method: (init.method ?? 'GET').toUpperCase(),
    path: url.pathname,
    has_query: typeof sent.query === 'string',
    query: sent.query ?? null,
    operation_name: sent.operationName ?? null,
    variables: sent.variables ?? null,
    extensions: sent.extensions ?? null,
  });
  const response = await fetch(uri, init);
  const text = await response.clone().text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    body = text;
  }
  out('response', { n, status: response.status, cache_control: response.headers.get('cache-control'), body });
  return response;
}

function httpLink() {
  if (!env.DRIVER_URL) throw new Error('DRIVER_URL is not set');
  return new HttpLink({
    uri: env.DRIVER_URL,
    headers: env.DRIVER_TOKEN ? { Authorization: `Bearer ${env.DRIVER_TOKEN}` } : {},
    fetch: observedFetch,
  });
}

// A fresh client: its own cache and link chain (a new page load of the app).
function client(persisted) {
  const link = persisted ? ApolloLink.from([persisted, httpLink()]) : httpLink();
  return new ApolloClient({ link, cache: new InMemoryCache() });
}

// Runs one operation and prints its outcome; never throws for a GraphQL or HTTP failure.
async function run(c, step, document, variables = {}) {
  out('step', { name: step, operation: operationName(document) });
  const isMutation = document.definitions.some((d) => d.kind === Kind.OPERATION_DEFINITION && d.operation === 'mutation');
  try {
    const result = isMutation
      ? await c.mutate({ mutation: document, variables })
      : await c.query({ query: document, variables, fetchPolicy: 'network-only' });
    out('result', { step, data: result.data ?? null });
  } catch (error) {
    out('error', {
      step,
      name: error?.name ?? typeof error,
      message: String(error?.message ?? error),
      errors: error?.errors ?? null,
      status: error?.statusCode ?? null,
    });
  }
}

function readJson(variable) {
  const file = env[variable];
  if (!file) throw new Error(`${variable} is not set`);
  return JSON.parse(readFileSync(file, 'utf8'));
}

// The id of an operation in codegen's persisted-documents.json ({id: text}), found by operation name.
function codegenIds() {
  const ids = {};
  for (const [id, text] of Object.entries(readJson('CODEGEN_MANIFEST'))) {
    ids[operationName(parse(text))] = id;
  }
  return ids;
}

// -- the scenarios ---------------------------------------------------------------------------------

const USERS_VARIABLES = { limit: 2 };
const RENAME_VARIABLES = { id: 'user_driver', name: 'Ada' };

const scenarios = {
  async apq() {
    for (const phase of ['first', 'second']) {
      const c = client(new PersistedQueryLink({ sha256 }));
      await run(c, `${phase}-users`, OPERATIONS.Users, USERS_VARIABLES);
      await run(c, `${phase}-rename-user`, OPERATIONS.RenameUser, RENAME_VARIABLES);
    }
  },

  async 'apq-get'() {
    for (const phase of ['first', 'second']) {
      const c = client(new PersistedQueryLink({ sha256, useGETForHashedQueries: true }));
      await run(c, `${phase}-viewer-profile`, OPERATIONS.ViewerProfile);
    }
  },

  async 'enforce-manifest'() {
    const manifest = readJson('APOLLO_MANIFEST');
    const c = client(new PersistedQueryLink(generatePersistedQueryIdsFromManifest({ loadManifest: () => manifest })));
    await run(c, 'users', OPERATIONS.Users, USERS_VARIABLES);
    await run(c, 'viewer-profile', OPERATIONS.ViewerProfile);
    await run(c, 'rename-user', OPERATIONS.RenameUser, RENAME_VARIABLES);
  },

  async 'enforce-codegen'() {
    const ids = codegenIds();
    const c = client(new PersistedQueryLink({
      generateHash: (document) => {
        const id = ids[operationName(document)];
        if (!id) throw new Error(`${operationName(document)} is not in persisted-documents.json`);
        return id;
      },
      disable: () => false,
    }));
    await run(c, 'users', OPERATIONS.Users, USERS_VARIABLES);
    await run(c, 'rename-user', OPERATIONS.RenameUser, RENAME_VARIABLES);
  },

  async 'enforce-fulltext'() {
    await run(client(null), 'users-text', OPERATIONS.Users, USERS_VARIABLES);
  },

  async 'enforce-adhoc'() {
    await run(client(null), 'adhoc-text', AD_HOC);
    await run(client(new PersistedQueryLink({ sha256 })), 'adhoc-hash', AD_HOC);
  },
};

if (!Object.hasOwn(scenarios, scenario ?? '')) {
  process.stderr.write(`usage: node apollo_driver.mjs <${Object.keys(scenarios).join('|')}>\n`);
  process.exit(1);
}
try {
  await scenarios[scenario]();
  out('done');
} catch (error) {
  out('crash', { message: String(error?.stack ?? error) });
  process.exitCode = 1;
}
clearTimeout(watchdog);
