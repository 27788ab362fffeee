// Reference GraphQL-over-HTTP server (graphql-http's own handler) for the conformance audit.
//
// Usage: node server.mjs <port>   (or PORT=<port> node server.mjs)
// Serves the GraphQL endpoint at /v1/graphql on 127.0.0.1, where the gateway's Hasura adapter
// forwards `/graphql` and `/<backend>/v1/graphql`; every other path is 404. Prints one line
// "listening <port>" once it accepts connections, and exits on SIGTERM/SIGINT.
import http from 'node:http';
import { createHandler } from 'graphql-http/lib/use/http';
import { GraphQLObjectType, GraphQLSchema, GraphQLString } from 'graphql';

const schema = new GraphQLSchema({
  query: new GraphQLObjectType({
    name: 'Query',
    fields: {
      hello: { type: GraphQLString, resolve: () => 'world' },
    },
  }),
  // A mutation type, so that "mutation over GET" is refused for the right reason (9C48).
  mutation: new GraphQLObjectType({
    name: 'Mutation',
    fields: {
      noop: { type: GraphQLString, resolve: () => 'done' },
    },
  }),
});

const handler = createHandler({ schema });
const port = Number(process.argv[2] ?? process.env.PORT ?? 4000);

const server = http.createServer((req, res) => {
  const { pathname } = new URL(req.url ?? '/', 'http://127.0.0.1');
  if (pathname === '/v1/graphql') {
    handler(req, res).catch((err) => {
      res.writeHead(500, { 'content-type': 'text/plain' }).end(String(err));
    });
    return;
  }
  res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
});

server.listen(port, '127.0.0.1', () => {
  console.log(`listening ${server.address().port}`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close();
    server.closeAllConnections?.();
    process.exit(0);
  });
}
