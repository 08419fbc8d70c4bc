'use strict';
// s3rver (npm) for the bench: the S3 API on ADDRESS:PORT over DIRECTORY, plus the two control calls the
// harness uses with its moto server (scripts/s3server.py), so requests are counted the same way:
//   GET  /_s3ops/stats        → {"total": n, "<Operation>": n, ...} since the last reset
//   POST /_s3ops/stats/reset  → {}
// Usage: node bench/s3rver_main.js S3RVER_PACKAGE_DIR DIRECTORY ADDRESS PORT [--verbose]
// (started by bench/s3rver.py; credentials are s3rver's built-in S3RVER / S3RVER).

const http = require('http');
const [packageDir, directory, address, port, verbose] = process.argv.slice(2);
const S3rver = require(packageDir);

const app = new S3rver({ directory, silent: verbose !== '--verbose', vhostBuckets: false });
const handle = app.callback();
let counts = {};

function operation(req) {
  const [path, query = ''] = req.url.split('?');
  const params = new URLSearchParams(query);
  const objectPath = path.replace(/^\/+/, '').includes('/');
  if (req.method === 'GET' && path.replace(/\/+$/, '') === '') return 'ListBuckets';
  if (req.method === 'GET' && !objectPath) return params.get('list-type') === '2' ? 'ListObjectsV2' : 'ListObjects';
  if (req.method === 'POST' && params.has('delete')) return 'DeleteObjects';
  const kind = objectPath ? 'Object' : 'Bucket';
  return { GET: 'Get', PUT: 'Put', HEAD: 'Head', DELETE: 'Delete', POST: 'Post' }[req.method] + kind;
}

const server = http.createServer((req, res) => {
  if (req.url.startsWith('/_s3ops/')) {
    res.setHeader('Content-Type', 'application/json');
    if (req.url === '/_s3ops/stats/reset' && req.method === 'POST') {
      counts = {};
      res.end('{}');
    } else if (req.url === '/_s3ops/stats' && req.method === 'GET') {
      const total = Object.values(counts).reduce((a, b) => a + b, 0);
      res.end(JSON.stringify({ total, ...counts }));
    } else {
      res.statusCode = 404;
      res.end('{"error": "unknown control call"}');
    }
    return;
  }
  const op = operation(req);
  counts[op] = (counts[op] || 0) + 1;
  handle(req, res);
});

server.listen(Number(port), address, () => {
  process.stdout.write(`s3rver listening on ${address}:${server.address().port}\n`);
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => process.exit(0));
}
