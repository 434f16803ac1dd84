'use strict';
/**
 * The cts.v1 contract, loaded at runtime from the repository's .proto files.
 *
 * Nothing is generated: the client reads the same files the daemon's Python
 * code is generated from, so it cannot drift from the contract. Every file in
 * proto/cts/v1 is loaded, so a new service file needs no change here.
 */
const fs = require('node:fs');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');
const PROTO_ROOT = path.join(REPO_ROOT, 'proto');
const THIRD_PARTY_ROOT = path.join(REPO_ROOT, 'third_party', 'proto');
const PACKAGE_DIR = path.join(PROTO_ROOT, 'cts', 'v1');

// Field names as in the .proto (snake_case), int64 as decimal strings (no
// precision loss), enums by name, and absent fields filled with defaults so a
// reader never has to tell "unset" from "zero".
const LOADER_OPTIONS = Object.freeze({
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_ROOT, THIRD_PARTY_ROOT],
});

let cached = null;

/** The `cts.v1` namespace of service constructors and message types (loaded once). */
function ctsV1() {
  if (cached === null) {
    const files = fs
      .readdirSync(PACKAGE_DIR)
      .filter((name) => name.endsWith('.proto'))
      .sort()
      .map((name) => path.posix.join('cts', 'v1', name));
    const definition = protoLoader.loadSync(files, LOADER_OPTIONS);
    cached = grpc.loadPackageDefinition(definition).cts.v1;
  }
  return cached;
}

module.exports = { ctsV1, PROTO_ROOT, THIRD_PARTY_ROOT };
