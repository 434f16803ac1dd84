'use strict';
/**
 * Rich errors: the google.rpc.Status the daemon puts in the
 * `grpc-status-details-bin` trailer, decoded with protobufjs.
 *
 * ctsd answers every expected error with an ErrorInfo (a machine-readable
 * `reason`) and, for INVALID_ARGUMENT, a BadRequest naming each bad field.
 * The messages below are the subset of google/rpc/status.proto and
 * google/rpc/error_details.proto a client needs, with upstream's field numbers;
 * details of other types are returned undecoded.
 */
const protobuf = require('protobufjs');

const DETAILS_TRAILER = 'grpc-status-details-bin';

const GOOGLE_RPC = `
syntax = "proto3";
package google.rpc;
import "google/protobuf/any.proto";

message Status {
  int32 code = 1;
  string message = 2;
  repeated google.protobuf.Any details = 3;
}

message ErrorInfo {
  string reason = 1;
  string domain = 2;
  map<string, string> metadata = 3;
}

message BadRequest {
  message FieldViolation {
    string field = 1;
    string description = 2;
    string reason = 3;
  }
  repeated FieldViolation field_violations = 1;
}
`;

const TO_OBJECT = Object.freeze({ longs: String, enums: String, defaults: true });

function buildRoot() {
  const root = new protobuf.Root();
  root.addJSON(protobuf.common.get('google/protobuf/any.proto').nested);
  protobuf.parse(GOOGLE_RPC, root, { keepCase: true });
  return root.resolveAll();
}

const root = buildRoot();
const Status = root.lookupType('google.rpc.Status');

function decodeAny(any) {
  const typeName = any.type_url.slice(any.type_url.lastIndexOf('/') + 1);
  const type = root.lookup(typeName);
  if (!(type instanceof protobuf.Type)) {
    return { '@type': any.type_url, value: Buffer.from(any.value) };
  }
  return { '@type': any.type_url, ...type.toObject(type.decode(any.value), TO_OBJECT) };
}

/**
 * The google.rpc.Status of a failed call: `{code, message, details}`, each
 * detail in the JSON form of Any (`{'@type': url, ...fields}`). Null when the
 * error carries no status details (e.g. a transport error).
 */
function richStatus(error) {
  const values = error?.metadata?.get(DETAILS_TRAILER) ?? [];
  if (values.length === 0) {
    return null;
  }
  const status = Status.decode(values[0]);
  return {
    code: status.code,
    message: status.message,
    details: status.details.map(decodeAny),
  };
}

function detailsOfType(error, typeName) {
  const status = richStatus(error);
  return (status?.details ?? []).filter((d) => d['@type'].endsWith(`/${typeName}`));
}

/** `{field: description}` from every google.rpc.BadRequest of the error. */
function fieldViolations(error) {
  const found = {};
  for (const bad of detailsOfType(error, 'google.rpc.BadRequest')) {
    for (const violation of bad.field_violations) {
      found[violation.field] = violation.description;
    }
  }
  return found;
}

/** The google.rpc.ErrorInfo of the error (`{reason, domain, metadata}`), or null. */
function errorInfo(error) {
  return detailsOfType(error, 'google.rpc.ErrorInfo')[0] ?? null;
}

module.exports = { richStatus, fieldViolations, errorInfo, DETAILS_TRAILER };
