#!/usr/bin/env node
// Tandem sandbox forwarder: runs INSIDE a sandbox container that has no network. It listens on loopback TCP ports
// and relays each connection to a unix socket in /run/tandem-gateway, a read-only bind mount of a per-session
// directory on the worker host where the credential proxy (git) and the egress proxy listen.
//
//   node forward.mjs <port>=<socket> ...   serve (a port already taken means a forwarder already serves it)
//   node forward.mjs --check <port> ...    exit 0 when every port accepts a connection, else 1
import * as net from 'node:net';

const args = process.argv.slice(2);

if (args[0] === '--check') {
  const ok = await Promise.all(
    args.slice(1).map(
      (port) =>
        new Promise((resolve) => {
          const s = net.createConnection({ host: '127.0.0.1', port: Number(port) });
          s.on('connect', () => (s.destroy(), resolve(true)));
          s.on('error', () => resolve(false));
        }),
    ),
  );
  process.exit(ok.every(Boolean) ? 0 : 1);
}

let serving = 0;
for (const arg of args) {
  const eq = arg.indexOf('=');
  const port = Number(arg.slice(0, eq));
  const socketPath = arg.slice(eq + 1);
  const server = net.createServer((client) => {
    const upstream = net.createConnection(socketPath);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.pipe(upstream).pipe(client);
  });
  server.on('error', (e) => {
    if (e.code !== 'EADDRINUSE') process.stderr.write(`forward: ${port}: ${e.message}\n`);
    server.close();
    if (--serving === 0) process.exit(0);
  });
  serving++;
  server.listen(port, '127.0.0.1');
}
