#!/usr/bin/env node
'use strict';
/**
 * Lists ctsd's connections as a table, then streams a connection test when
 * the daemon's contract has TestConnection (and `--test NAME` asks for one).
 *
 *   node examples/list-connections.js [--addr ADDR] [--filter EXPR] [--test NAME]
 *                                     [--ca FILE] [--token-file FILE] [--server-name NAME]
 *
 * ADDR defaults to $CTS_ADDR, else unix:/run/ctsd/ctsd.sock. The token is read
 * from a file, never taken on the command line where `ps` would show it.
 */
const fs = require('node:fs');
const { parseArgs } = require('node:util');
const grpc = require('@grpc/grpc-js');
const {
  call,
  canTestConnection,
  createConnectionClient,
  fieldViolations,
  testConnection,
} = require('../src');

const DEFAULT_ADDRESS = 'unix:/run/ctsd/ctsd.sock';
const PAGE_SIZE = 200;

const OPTIONS = {
  addr: { type: 'string' },
  filter: { type: 'string', default: '' },
  test: { type: 'string' },
  ca: { type: 'string' },
  'token-file': { type: 'string' },
  'server-name': { type: 'string' },
};

function clientFor(args) {
  return createConnectionClient(args.addr ?? process.env.CTS_ADDR ?? DEFAULT_ADDRESS, {
    rootCert: args.ca ? fs.readFileSync(args.ca) : undefined,
    token: args['token-file'] ? fs.readFileSync(args['token-file'], 'utf8').trim() : undefined,
    serverName: args['server-name'],
  });
}

async function listAll(client, filter) {
  const connections = [];
  let pageToken = '';
  do {
    const page = await call(client, 'ListConnections', {
      filter,
      page_size: PAGE_SIZE,
      page_token: pageToken,
    });
    connections.push(...page.connections);
    pageToken = page.next_page_token;
  } while (pageToken);
  return connections;
}

/** `API_TYPE_PERPETUAL_FUTURES` -> `perpetual-futures`. */
function enumLabel(value, prefix) {
  return value.slice(prefix.length).toLowerCase().replaceAll('_', '-');
}

function table(connections) {
  const header = ['NAME', 'DISPLAY NAME', 'EXCHANGE', 'API TYPE', 'TESTNET', 'ENABLED', 'LAST TEST'];
  const rows = connections.map((c) => [
    c.name,
    c.display_name,
    c.exchange,
    enumLabel(c.api_type, 'API_TYPE_'),
    c.testnet ? 'yes' : 'no',
    c.enabled ? 'yes' : 'no',
    c.last_test ? enumLabel(c.last_test.status, 'TEST_STATUS_') : '-',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  return [header, ...rows]
    .map((row) => row.map((cell, i) => cell.padEnd(widths[i])).join('  ').trimEnd())
    .join('\n');
}

/** Streams the test of connection `name`; the exit code (1 when asked for but unavailable). */
async function streamTest(client, name) {
  if (!canTestConnection(client)) {
    console.error("connection test unavailable: this daemon's contract has no TestConnection RPC");
    return name ? 1 : 0;
  }
  if (!name) {
    console.error('connection test available: pass --test connections/ID to stream one');
    return 0;
  }
  for await (const event of testConnection(client, name)) {
    console.log(JSON.stringify(event));
  }
  return 0;
}

function report(error) {
  const isRpcError = typeof error.code === 'number' && error.metadata instanceof grpc.Metadata;
  if (!isRpcError) {
    console.error(`error: ${error.message}`);
    return 2;
  }
  console.error(`error: ${grpc.status[error.code]}: ${error.details}`);
  for (const [field, description] of Object.entries(fieldViolations(error))) {
    console.error(`  ${field}: ${description}`);
  }
  return 1;
}

async function main(argv) {
  const { values: args } = parseArgs({ args: argv, options: OPTIONS });
  const client = clientFor(args);
  try {
    const connections = await listAll(client, args.filter);
    console.log(connections.length ? table(connections) : 'no connections');
    return await streamTest(client, args.test);
  } finally {
    client.close();
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error) => {
    process.exitCode = report(error);
  },
);
