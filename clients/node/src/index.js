'use strict';
/** The public surface of the ctsd Node client. */
const { ctsV1 } = require('./protos');
const {
  call,
  canTestConnection,
  createConnectionClient,
  grpcTarget,
  testConnection,
} = require('./client');
const { errorInfo, fieldViolations, richStatus } = require('./status');

module.exports = {
  call,
  canTestConnection,
  createConnectionClient,
  ctsV1,
  errorInfo,
  fieldViolations,
  grpcTarget,
  richStatus,
  testConnection,
};
