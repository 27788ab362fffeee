// The graphql-ws npm client (what a frontend ships) against the gateway's WebSocket proxy.
// Driven by tests/e2e/test_websocket_npm.py:
//
//   node client.mjs <scenario> <ws url>
//
// Scenarios (tokens and timings come from the environment):
//   events     connectionParams { headers: { Authorization } } from WS_TOKEN; iterate; take
//              WS_EVENTS (default 3) events; dispose
//   refused    the same with a token the gateway refuses: iterate throws the CloseEvent
//   run        one connection (retryAttempts 0): receive until WS_RUN_UNTIL (unix seconds), printing
//              every event, close and error; with WS_RENEW_TOKEN it sends the renewal ping
//              {"type":"ping","payload":{"token":…}} WS_RENEW_AFTER_MS after connection_ack and
//              prints the pong's payload
//   reconnect  connectionParams is a function handing out WS_TOKENS (a JSON array) one per
//              connection; retryAttempts 1, shouldRetry on 4403, a short retryWait: after the
//              expiry close the client reconnects with the next token and the subscription goes on
//
// Output: one JSON object a line, {"event": …, "t": <unix seconds>, …}. Exit 0 when the scenario ran
// to its end, 3 on WS_TIMEOUT_MS (default 20000): never a hang.
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

const [scenario, url] = process.argv.slice(2);
const env = process.env;
const TIMEOUT_MS = Number(env.WS_TIMEOUT_MS ?? 20000);
const QUERY = { query: 'subscription Counter { counter }' };

const out = (event, fields = {}) =>
  process.stdout.write(JSON.stringify({ event, t: Date.now() / 1000, ...fields }) + '\n');
const closeFields = (e) =>
  e && typeof e === 'object' && 'code' in e
    ? { code: e.code, reason: String(e.reason ?? '') }
    : { error: String(e instanceof Error ? e.message : e) };
const authParams = (token) => ({ headers: { Authorization: `Bearer ${token}` } });

const watchdog = setTimeout(() => {
  out('timeout', { after_ms: TIMEOUT_MS });
  process.exit(3);
}, TIMEOUT_MS);

let lastSocket; // the newest socket, to let its close handshake finish before the process exits

function client(options) {
  return createClient({
    url,
    webSocketImpl: WebSocket, // Node 20 has no global WebSocket
    retryAttempts: 0,
    ...options,
    on: {
      opened: (socket) => (lastSocket = socket),
      connected: (socket, payload, wasRetry) => out('connected', { was_retry: wasRetry }),
      closed: (e) => out('closed', closeFields(e)),
      ...options.on,
    },
  });
}

// dispose() only starts the close: wait (bounded) until the `complete` and the close frame are out.
async function dispose(c) {
  await c.dispose();
  const socket = lastSocket;
  if (!socket || socket.readyState === WebSocket.CLOSED) return;
  await new Promise((resolve) => {
    const timer = setTimeout(resolve, 2000);
    socket.addEventListener('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

// Iterates the subscription, printing each event, until `stop(count)` says so; a close or error
// the client gives up on is printed as "thrown".
async function receive(c, stop) {
  let count = 0;
  try {
    for await (const result of c.iterate(QUERY)) {
      count += 1;
      out('next', { counter: result.data?.counter ?? null, errors: result.errors ?? null });
      if (stop(count)) break; // return() sends `complete` for the operation
    }
    out('ended', { count });
  } catch (e) {
    out('thrown', closeFields(e));
  }
}

const runUntil = Number(env.WS_RUN_UNTIL ?? 0);
const pastDeadline = () => Date.now() / 1000 >= runUntil;

async function main() {
  switch (scenario) {
    case 'events':
    case 'refused': {
      const c = client({ connectionParams: authParams(env.WS_TOKEN) });
      const wanted = Number(env.WS_EVENTS ?? 3);
      await receive(c, (count) => count >= wanted);
      await dispose(c);
      break;
    }
    case 'run': {
      let renewal;
      const c = client({
        connectionParams: authParams(env.WS_TOKEN),
        on: {
          connected: (socket, payload, wasRetry) => {
            out('connected', { was_retry: wasRetry });
            if (!env.WS_RENEW_TOKEN) return;
            renewal = setTimeout(() => {
              if (socket.readyState !== WebSocket.OPEN) return;
              socket.send(JSON.stringify({ type: 'ping', payload: { token: env.WS_RENEW_TOKEN } }));
              out('renewal_sent');
            }, Number(env.WS_RENEW_AFTER_MS ?? 1000));
          },
          pong: (received, payload) => out('pong', { received, payload: payload ?? null }),
        },
      });
      await receive(c, pastDeadline);
      clearTimeout(renewal);
      await dispose(c);
      break;
    }
    case 'reconnect': {
      const tokens = JSON.parse(env.WS_TOKENS);
      let calls = 0;
      const c = client({
        // called on every connection attempt: a frontend returns `await getToken()` here
        connectionParams: async () => {
          const token = tokens[Math.min(calls, tokens.length - 1)];
          calls += 1;
          out('connection_params', { call: calls });
          return authParams(token);
        },
        retryAttempts: 1, // consecutive failed attempts; graphql-ws resets the count on every ack
        shouldRetry: (e) => e?.code === 4403, // 4403 is not fatal in graphql-ws, retried as any close
        retryWait: () => new Promise((resolve) => setTimeout(resolve, 100)),
      });
      await receive(c, pastDeadline);
      await dispose(c);
      break;
    }
    default:
      out('usage', { error: `unknown scenario ${scenario}` });
      process.exit(2);
  }
  out('done');
  clearTimeout(watchdog);
}

main().then(
  () => process.exit(0),
  (e) => {
    out('crashed', { error: String(e?.stack ?? e) });
    process.exit(1);
  },
);
