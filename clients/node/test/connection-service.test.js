'use strict';
/**
 * The round trip against a real ctsd at $CTSD_ADDR (tests/node runs it with a
 * fresh daemon): create, list, a rich INVALID_ARGUMENT, delete.
 *
 * Then the same over TLS with a bearer token, against the daemon at
 * $CTSD_TLS_ADDR (tcp://HOST:PORT) whose certificate $CTSD_TLS_CA (a PEM file)
 * signed, verified as $CTSD_TLS_SERVER_NAME (optional), with the token in the
 * file $CTSD_TOKEN_FILE; and a wrong or missing token answered UNAUTHENTICATED.
 */
const assert = require('node:assert/strict');
const path = require('node:path');
const fs = require('node:fs');
const { execFile } = require('node:child_process');
const { promisify } = require('node:util');
const { after, before, describe, test } = require('node:test');
const grpc = require('@grpc/grpc-js');
const {
  call,
  canTestConnection,
  createConnectionClient,
  errorInfo,
  fieldViolations,
} = require('../src');

const ADDRESS = process.env.CTSD_ADDR;
const SKIP = ADDRESS ? false : 'CTSD_ADDR is not set (the address of a running ctsd)';
const EXAMPLE = path.join(__dirname, '..', 'examples', 'list-connections.js');

const TLS = {
  address: process.env.CTSD_TLS_ADDR,
  caFile: process.env.CTSD_TLS_CA,
  serverName: process.env.CTSD_TLS_SERVER_NAME || undefined,
  tokenFile: process.env.CTSD_TOKEN_FILE,
};
const TLS_SKIP =
  TLS.address && TLS.caFile && TLS.tokenFile
    ? false
    : 'CTSD_TLS_ADDR, CTSD_TLS_CA and CTSD_TOKEN_FILE are not all set (a TLS + token ctsd)';

const API_KEY = 'AKIANODECLIENT0000042';
const SECRET = 'node-s3cr3t-SHOULD-NEVER-LEAK';

function binanceSpot(displayName, overrides = {}) {
  return {
    display_name: displayName,
    exchange: 'binance',
    api_type: 'API_TYPE_SPOT',
    credentials: { api_key: API_KEY, api_secret: SECRET },
    ...overrides,
  };
}

function rejectsWith(promise, code) {
  return assert.rejects(promise, (error) => {
    assert.equal(error.code, code, `${grpc.status[error.code]}: ${error.details}`);
    return true;
  });
}

async function listAll(client) {
  const page = await call(client, 'ListConnections', { page_size: 1000 });
  assert.equal(page.next_page_token, '');
  return page.connections;
}

describe('ConnectionService against ctsd', { skip: SKIP }, () => {
  let client;
  const id = `node-${process.pid}`;

  before(() => {
    client = createConnectionClient(ADDRESS);
  });

  after(() => client?.close());

  test('create, list, rich error, delete', async () => {
    const created = await call(client, 'CreateConnection', {
      connection: binanceSpot(`Node ${id}`),
      connection_id: id,
    });
    assert.equal(created.name, `connections/${id}`);
    assert.equal(created.api_type, 'API_TYPE_SPOT'); // enums by name
    assert.equal(created.margin_mode, 'MARGIN_MODE_CROSS');
    assert.equal(created.credentials, null); // write-only
    assert.equal(created.credentials_info.api_key_hint, `****${API_KEY.slice(-4)}`);
    assert.match(created.create_time.seconds, /^\d+$/); // int64 as a string
    assert.ok(created.etag);

    const listed = (await listAll(client)).find((c) => c.name === created.name);
    assert.deepEqual(listed, created);

    await assert.rejects(
      call(client, 'CreateConnection', {
        connection: binanceSpot('', { exchange: 'nasdaq' }),
        connection_id: 'Not_Valid',
      }),
      (error) => {
        assert.equal(error.code, grpc.status.INVALID_ARGUMENT);
        assert.deepEqual(Object.keys(fieldViolations(error)).sort(), [
          'connection.display_name',
          'connection.exchange',
          'connection_id',
        ]);
        assert.equal(errorInfo(error).domain, 'ctsd.cts.v1');
        assert.ok(errorInfo(error).reason);
        assert.ok(!JSON.stringify(error).includes(SECRET));
        return true;
      },
    );

    assert.deepEqual(await call(client, 'DeleteConnection', { name: created.name }), {});
    assert.ok(!(await listAll(client)).some((c) => c.name === created.name));
    await rejectsWith(
      call(client, 'GetConnection', { name: created.name }),
      grpc.status.NOT_FOUND,
    );
  });

  test('the example lists connections as a table', async () => {
    const name = `connections/${id}-example`;
    await call(client, 'CreateConnection', {
      connection: binanceSpot(`Node ${id} example`),
      connection_id: `${id}-example`,
    });
    try {
      const { stdout, stderr } = await promisify(execFile)(process.execPath, [
        EXAMPLE,
        '--addr',
        ADDRESS,
      ]);
      const lines = stdout.split('\n');
      assert.match(lines[0], /^NAME\s+DISPLAY NAME\s+EXCHANGE\s+API TYPE\s+TESTNET\s+ENABLED/);
      const row = lines.find((line) => line.startsWith(`${name} `));
      assert.match(row, new RegExp(`^${name}\\s+Node ${id} example\\s+binance\\s+spot\\s+no`));
      if (!canTestConnection(client)) {
        assert.match(stderr, /connection test unavailable/);
      }
    } finally {
      await call(client, 'DeleteConnection', { name });
    }
  });
});

describe('ConnectionService over TLS with a bearer token', { skip: TLS_SKIP }, () => {
  let client;
  let rootCert;
  let token;
  const id = `node-tls-${process.pid}`;

  function tlsClient(options) {
    const { serverName } = TLS;
    return createConnectionClient(TLS.address, { rootCert, serverName, ...options });
  }

  before(() => {
    rootCert = fs.readFileSync(TLS.caFile);
    token = fs.readFileSync(TLS.tokenFile, 'utf8').trim();
    client = tlsClient({ token });
  });

  after(() => client?.close());

  test('lists connections and reads a rich error', async () => {
    const created = await call(client, 'CreateConnection', {
      connection: binanceSpot(`Node TLS ${id}`),
      connection_id: id,
    });
    try {
      const listed = (await listAll(client)).find((c) => c.name === created.name);
      assert.deepEqual(listed, created);
      assert.equal(listed.credentials, null);

      await assert.rejects(
        call(client, 'CreateConnection', {
          connection: binanceSpot('', { exchange: 'nasdaq' }),
          connection_id: 'Not_Valid',
        }),
        (error) => {
          assert.equal(error.code, grpc.status.INVALID_ARGUMENT, error.details);
          assert.deepEqual(Object.keys(fieldViolations(error)).sort(), [
            'connection.display_name',
            'connection.exchange',
            'connection_id',
          ]);
          assert.equal(errorInfo(error).domain, 'ctsd.cts.v1');
          assert.ok(!JSON.stringify(error).includes(SECRET));
          return true;
        },
      );
    } finally {
      await call(client, 'DeleteConnection', { name: created.name });
    }
  });

  test('a wrong or missing token is UNAUTHENTICATED', async () => {
    const wrong = tlsClient({ token: 'x'.repeat(token.length) });
    const missing = tlsClient({});
    try {
      for (const other of [wrong, missing]) {
        await assert.rejects(call(other, 'ListConnections', { page_size: 1 }), (error) => {
          assert.equal(error.code, grpc.status.UNAUTHENTICATED, error.details);
          assert.ok(!JSON.stringify(error).includes(token));
          assert.ok(!String(error.details).includes(token));
          return true;
        });
      }
    } finally {
      wrong.close();
      missing.close();
    }
  });

  test('the example lists connections over TLS with --ca and --token-file', async () => {
    const name = `connections/${id}-example`;
    await call(client, 'CreateConnection', {
      connection: binanceSpot(`Node TLS ${id} example`),
      connection_id: `${id}-example`,
    });
    try {
      const args = [EXAMPLE, '--addr', TLS.address, '--ca', TLS.caFile];
      args.push('--token-file', TLS.tokenFile);
      if (TLS.serverName) {
        args.push('--server-name', TLS.serverName);
      }
      const { stdout, stderr } = await promisify(execFile)(process.execPath, args);
      const lines = stdout.split('\n');
      assert.match(lines[0], /^NAME\s+DISPLAY NAME\s+EXCHANGE/);
      assert.ok(lines.some((line) => line.startsWith(`${name} `)), stdout);
      assert.ok(!stdout.includes(token) && !stderr.includes(token));
    } finally {
      await call(client, 'DeleteConnection', { name });
    }
  });
});
