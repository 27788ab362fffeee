// GraphQL Code Generator with the client preset: besides the typed documents it writes
// persisted-documents.json, a flat {"sha256:<hex>": "<document>"} map (client-preset 6 defaults:
// sha256, ids prefixed "sha256:"). Output under $MANIFEST_OUT_DIR/gql/ (set by generate_manifests.mjs).
import type { CodegenConfig } from '@graphql-codegen/cli';

const outDir = process.env.MANIFEST_OUT_DIR;
if (!outDir) throw new Error('MANIFEST_OUT_DIR is not set: run `npm run manifests -- <output dir>`');

const config: CodegenConfig = {
  schema: 'schema.graphql',
  documents: ['src/**/*.graphql'],
  ignoreNoDocuments: false,
  generates: {
    [`${outDir.replace(/\/+$/, '')}/gql/`]: {
      preset: 'client',
      presetConfig: {
        persistedDocuments: true,
      },
    },
  },
};

export default config;
