// @apollo/generate-persisted-query-manifest's configuration (found by cosmiconfig; a team with a fixed
// output path would write the same two keys in persisted-query-manifest.config.json). The output
// goes to $MANIFEST_OUT_DIR (set by generate_manifests.mjs) so that a test run never writes into
// the repository.
const path = require('node:path');

const outDir = process.env.MANIFEST_OUT_DIR;
if (!outDir) throw new Error('MANIFEST_OUT_DIR is not set: run `npm run manifests -- <output dir>`');

module.exports = {
  documents: ['src/**/*.graphql'],
  output: path.join(outDir, 'persisted-query-manifest.json'),
};
