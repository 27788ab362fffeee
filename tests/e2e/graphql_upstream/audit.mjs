// Runs graphql-http's GraphQL-over-HTTP server audits against one URL and prints the results as JSON.
//
// Usage: AUDIT_TOKEN=<jwt> [AUDIT_HEADERS='{"x-hasura-role":"admin"}'] node audit.mjs <url>
// The token travels in the environment, not on the command line, so it never shows in a process
// list. Output: one JSON array on stdout, one entry per audit:
//   {id, name, level: "MUST"|"SHOULD"|"MAY", status: "ok"|"notice"|"warn"|"error", reason?, response?}
// where `response` ({status, contentType, body}) describes what the server answered to a failed audit.
import { auditServer } from 'graphql-http';

const url = process.argv[2];
if (!url) {
  console.error('usage: node audit.mjs <url>');
  process.exit(2);
}
const token = process.env.AUDIT_TOKEN;
const extra = JSON.parse(process.env.AUDIT_HEADERS || '{}');

// auditServer has no `headers` option, and some audits call fetchFn(url) with no init at all.
const fetchFn = (input, init = {}) => {
  const headers = new Headers(init.headers ?? {});
  if (token) headers.set('authorization', `Bearer ${token}`);
  for (const [name, value] of Object.entries(extra)) headers.set(name, value);
  return fetch(input, { ...init, headers });
};

async function describe(response) {
  if (!response) return undefined;
  let body;
  try {
    body = (await response.clone().text()).slice(0, 500);
  } catch {
    body = '<body already read>';
  }
  return { status: response.status, contentType: response.headers.get('content-type'), body };
}

const results = await auditServer({ url, fetchFn });
const report = [];
for (const result of results) {
  const entry = { id: result.id, name: result.name, level: result.name.split(' ')[0], status: result.status };
  if (result.status !== 'ok') {
    entry.reason = result.reason;
    entry.response = await describe(result.response);
  }
  report.push(entry);
}
process.stdout.write(JSON.stringify(report) + '\n');
