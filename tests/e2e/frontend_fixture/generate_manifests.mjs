// `npm run manifests -- <output dir>` (or MANIFEST_OUT_DIR=<dir> npm run manifests): the frontend's
// build step that produces the trusted-documents manifests, with the real tools and no network:
//
//   <dir>/persisted-query-manifest.json   @apollo/generate-persisted-query-manifest (Apollo's format)
//   <dir>/gql/persisted-documents.json    @graphql-codegen/cli + client preset (persistedDocuments)
//
// Both read the operations in src/*.graphql. The output directory is required: nothing is written
// into the fixture. Exits non-zero (with the tool's output) when a generator fails.
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const target = process.argv[2] ?? process.env.MANIFEST_OUT_DIR;
if (!target) {
  console.error('usage: npm run manifests -- <output dir>   (or set MANIFEST_OUT_DIR)');
  process.exit(2);
}
const outDir = path.resolve(target);
mkdirSync(outDir, { recursive: true });

const tools = [
  ['apollo', 'node_modules/@apollo/generate-persisted-query-manifest/cli.js',
    ['--config', 'persisted-query-manifest.config.cjs']],
  ['codegen', 'node_modules/@graphql-codegen/cli/esm/bin.js', ['--config', 'codegen.ts', '--silent']],
];
for (const [name, script, args] of tools) {
  const result = spawnSync(process.execPath, [path.join(here, script), ...args], {
    cwd: here,
    env: { ...process.env, MANIFEST_OUT_DIR: outDir },
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (result.status !== 0) {
    process.stderr.write(`${name} manifest generation failed (exit ${result.status ?? result.signal}):\n`);
    process.stderr.write(`${result.stdout ?? ''}${result.stderr ?? ''}${result.error ?? ''}\n`);
    process.exit(1);
  }
}
console.log(JSON.stringify({
  apollo: path.join(outDir, 'persisted-query-manifest.json'),
  codegen: path.join(outDir, 'gql', 'persisted-documents.json'),
}));
