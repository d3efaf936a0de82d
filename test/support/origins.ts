/**
 * Real legacy backends for the proxy and tcp tests, each started by the test
 * on a free loopback port and gone after stop(): nginx (plain or legacy
 * HTTPS), a node:http sink that reports and misbehaves, and redis-server.
 */
export { makeRsaCert } from './rsa-cert.js';
export { SLOW_RATE, STATUS_CODES, UPLOAD_MAX_BYTES, startNginxOrigin, type AccessEntry, type NginxOrigin, type NginxOriginOptions, type NginxTls } from './nginx-origin.js';
export { PATTERN_PERIOD, patternBytes, patternSha256, startSinkOrigin, type SinkOrigin, type SinkRecord } from './sink-origin.js';
export { startRedis, type RedisOrigin } from './redis-origin.js';
