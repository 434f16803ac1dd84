'use strict';
/** The client library on its own: addresses, options, and the token on the wire. */
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { after, before, describe, test } = require('node:test');
const grpc = require('@grpc/grpc-js');
const { call, createConnectionClient, ctsV1, grpcTarget, richStatus } = require('../src');

describe('grpcTarget', () => {
  test('keeps unix:PATH and HOST:PORT, drops tcp://', () => {
    assert.equal(grpcTarget('unix:/run/ctsd/ctsd.sock'), 'unix:/run/ctsd/ctsd.sock');
    assert.equal(grpcTarget('tcp://127.0.0.1:50051/'), '127.0.0.1:50051');
    assert.equal(grpcTarget('localhost:50051'), 'localhost:50051');
  });

  test('refuses addresses without a socket path or port', () => {
    for (const bad of ['unix:', 'tcp://localhost', 'localhost', '']) {
      assert.throws(() => grpcTarget(bad), /address/, bad);
    }
  });
});

describe('createConnectionClient options', () => {
  test('refuses to send a token over plaintext TCP', () => {
    assert.throws(() => createConnectionClient('127.0.0.1:1', { token: 't' }), /needs TLS/);
  });

  test('refuses half a client certificate', () => {
    assert.throws(
      () => createConnectionClient('127.0.0.1:1', { clientKey: Buffer.from('k') }),
      /both clientKey and clientCert/,
    );
  });
});

describe('against an in-process server', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cts-node-'));
  const address = `unix:${path.join(dir, 'fake.sock')}`;
  const server = new grpc.Server();
  const seen = [];

  before(async () => {
    server.addService(ctsV1().ConnectionService.service, {
      ListConnections(rpc, done) {
        seen.push(rpc.metadata.get('authorization'));
        done(null, { connections: [], next_page_token: '', total_size: 0 });
      },
    });
    await new Promise((resolve, reject) =>
      server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (error) =>
        error ? reject(error) : resolve(),
      ),
    );
  });

  after(() => {
    server.forceShutdown();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('a bearer token is sent as authorization metadata on every call', async () => {
    const client = createConnectionClient(address, { token: 'tok-123' });
    try {
      await call(client, 'ListConnections', {});
      await call(client, 'ListConnections', {});
    } finally {
      client.close();
    }
    assert.deepEqual(seen, [['Bearer tok-123'], ['Bearer tok-123']]);
  });

  test('an error without status details has no rich status', async () => {
    const client = createConnectionClient(address);
    try {
      await assert.rejects(call(client, 'GetConnection', { name: 'connections/x' }), (error) => {
        assert.equal(error.code, grpc.status.UNIMPLEMENTED);
        assert.equal(richStatus(error), null);
        return true;
      });
    } finally {
      client.close();
    }
  });
});
