'use strict';
/**
 * A ConnectionService client for ctsd, over a Unix socket or TCP, optionally
 * with TLS (server-verified, or mutual) and a bearer token.
 *
 * Addresses are written the way the daemon's `--listen` and the Python CLI
 * take them: `unix:PATH`, `tcp://HOST:PORT`, or plain `HOST:PORT`.
 */
const grpc = require('@grpc/grpc-js');
const { ctsV1 } = require('./protos');

const DEFAULT_TIMEOUT_MS = 10_000;
const DEFAULT_TEST_TIMEOUT_MS = 120_000;

/** The gRPC target for an address: `unix:PATH` and `HOST:PORT` as is, `tcp://` dropped. */
function grpcTarget(address) {
  if (address.startsWith('unix:')) {
    if (address === 'unix:') {
      throw new Error("address 'unix:' names no socket path");
    }
    return address;
  }
  const hostPort = address.startsWith('tcp://')
    ? address.slice('tcp://'.length).replace(/\/+$/, '')
    : address;
  const match = /^(.+):(\d+)$/.exec(hostPort);
  if (match === null) {
    throw new Error(`address '${address}' must be unix:PATH, tcp://HOST:PORT or HOST:PORT`);
  }
  return hostPort;
}

function usesTls({ tls, rootCert, clientKey, clientCert }) {
  return Boolean(tls || rootCert || clientKey || clientCert);
}

function channelCredentials(options) {
  if (!usesTls(options)) {
    return grpc.credentials.createInsecure();
  }
  const { rootCert, clientKey, clientCert } = options;
  if (Boolean(clientKey) !== Boolean(clientCert)) {
    throw new Error('mutual TLS needs both clientKey and clientCert');
  }
  // A null root certificate means the system's trust store.
  return grpc.credentials.createSsl(rootCert ?? null, clientKey ?? null, clientCert ?? null);
}

/** Adds `authorization: Bearer TOKEN` to every call made through the client. */
function bearerTokenInterceptor(token) {
  return (options, nextCall) =>
    new grpc.InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        metadata.set('authorization', `Bearer ${token}`);
        next(metadata, listener);
      },
    });
}

/**
 * A ConnectionService client for `address`.
 *
 * Options:
 * - `tls`: use TLS with the system's roots (implied by `rootCert`).
 * - `rootCert`: PEM of the CA that signed the daemon's certificate.
 * - `clientKey`, `clientCert`: PEM key and certificate for mutual TLS.
 * - `serverName`: the name to verify the certificate against, when it differs
 *   from the address's host (e.g. connecting to 127.0.0.1 with a `localhost` certificate).
 * - `token`: bearer token sent as `authorization` metadata on every call.
 *   Refused over plaintext TCP, where anyone on the path could read it.
 * - `channelOptions`: extra grpc-js channel options.
 */
function createConnectionClient(address, options = {}) {
  const target = grpcTarget(address);
  if (options.token && !usesTls(options) && !target.startsWith('unix:')) {
    throw new Error('a bearer token needs TLS (or a Unix socket); refusing to send it in clear');
  }
  const channelOptions = { ...options.channelOptions };
  if (options.serverName) {
    channelOptions['grpc.ssl_target_name_override'] = options.serverName;
    channelOptions['grpc.default_authority'] = options.serverName;
  }
  if (options.token) {
    channelOptions.interceptors = [bearerTokenInterceptor(options.token)];
  }
  return new (ctsV1().ConnectionService)(target, channelCredentials(options), channelOptions);
}

/** The loaded definition of `method` on the client's service, or undefined. */
function methodDefinition(client, method) {
  const service = client.constructor.service;
  return Object.hasOwn(service, method) ? service[method] : undefined;
}

/** Calls a unary RPC and resolves with its response (deadline: `timeoutMs`). */
function call(client, method, request, { timeoutMs = DEFAULT_TIMEOUT_MS } = {}) {
  const definition = methodDefinition(client, method);
  if (definition === undefined || definition.requestStream || definition.responseStream) {
    throw new Error(`${method} is not a unary RPC of ${client.constructor.serviceName}`);
  }
  return new Promise((resolve, reject) => {
    client[method](request, { deadline: Date.now() + timeoutMs }, (error, response) =>
      error ? reject(error) : resolve(response),
    );
  });
}

/** Whether the daemon's contract has the server-streaming TestConnection RPC. */
function canTestConnection(client) {
  return methodDefinition(client, 'TestConnection')?.responseStream === true;
}

/**
 * Streams a connection test: an async iterable of the events TestConnection
 * sends for connection `name` (`connections/{id}`); a failed call throws from
 * the loop with its gRPC status.
 */
function testConnection(client, name, { timeoutMs = DEFAULT_TEST_TIMEOUT_MS } = {}) {
  if (!canTestConnection(client)) {
    throw new Error('TestConnection is not in this contract (proto/cts/v1)');
  }
  return client.TestConnection({ name }, { deadline: Date.now() + timeoutMs });
}

module.exports = {
  call,
  canTestConnection,
  createConnectionClient,
  grpcTarget,
  testConnection,
};
