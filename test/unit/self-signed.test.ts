import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { X509Certificate, createPrivateKey } from "node:crypto";
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import https from "node:https";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";

import { createSelfSignedCert } from "../../src/tls/self-signed.js";
import { writeCertFiles } from "../../src/tls/write-cert-files.js";

const HOUR = 60 * 60 * 1000;
const DAY = 24 * HOUR;
const SERVER_AUTH_OID = "1.3.6.1.5.5.7.3.1";

const HAVE_OPENSSL = spawnSync("openssl", ["version"], { stdio: "ignore" }).status === 0;

function assertPemShape(pem: string, label: string): void {
  const lines = pem.trimEnd().split("\n");
  assert.equal(lines[0], `-----BEGIN ${label}-----`);
  assert.equal(lines[lines.length - 1], `-----END ${label}-----`);
  const body = lines.slice(1, -1);
  assert.ok(body.length > 0);
  body.forEach((line, i) => {
    assert.match(line, /^[A-Za-z0-9+/=]+$/);
    if (i < body.length - 1) assert.equal(line.length, 64, `PEM line ${i} must be 64 chars`);
    else assert.ok(line.length <= 64);
  });
  assert.ok(pem.endsWith("\n"));
}

async function withTmpDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "aludel-cert-test-"));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Starts an HTTPS server on 127.0.0.1:0 with the pair; returns the port and a closer. */
async function startServer(pair: { certPem: string; keyPem: string }): Promise<{ port: number; close: () => Promise<void> }> {
  const server = https.createServer({ cert: pair.certPem, key: pair.keyPem }, (_req, res) => {
    res.writeHead(200, { "content-type": "text/plain" });
    res.end("hello over tls");
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function get(options: https.RequestOptions): Promise<{ status: number; body: string; authorized: boolean }> {
  return new Promise((resolve, reject) => {
    const req = https.request({ method: "GET", path: "/", agent: false, ...options }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const socket = res.socket as import("node:tls").TLSSocket;
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8"), authorized: socket.authorized });
      });
      res.on("error", reject);
    });
    req.on("error", reject);
    req.setTimeout(10_000, () => req.destroy(new Error("request timed out")));
    req.end();
  });
}

function run(cmd: string, args: string[], timeoutMs = 15_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    // Asynchronous on purpose: the TLS server lives in this process's event loop.
    const child = spawn(cmd, args, { stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(); // s_client: EOF on stdin -> close the connection after the handshake
  });
}

test("createSelfSignedCert: defaults", async () => {
  const before = Date.now();
  const pair = await createSelfSignedCert();
  const after = Date.now();

  assertPemShape(pair.certPem, "CERTIFICATE");
  assertPemShape(pair.keyPem, "PRIVATE KEY");

  const cert = new X509Certificate(pair.certPem);
  const key = createPrivateKey(pair.keyPem);

  assert.equal(cert.subject, "CN=localhost");
  assert.equal(cert.issuer, "CN=localhost");
  const san = cert.subjectAltName ?? "";
  const sanEntries = san.split(", ");
  assert.ok(sanEntries.includes("DNS:localhost"), san);
  assert.ok(sanEntries.includes("IP Address:127.0.0.1"), san);
  assert.equal(cert.checkHost("localhost"), "localhost");
  assert.equal(cert.checkIP("127.0.0.1"), "127.0.0.1");
  assert.equal(cert.checkIP("::1"), "::1");

  assert.equal(key.type, "private");
  assert.equal(key.asymmetricKeyType, "ec");
  assert.equal(key.asymmetricKeyDetails?.namedCurve, "prime256v1");
  assert.equal(cert.checkPrivateKey(key), true);
  assert.equal(cert.verify(cert.publicKey), true, "self-signature must verify");

  assert.equal(cert.ca, false);
  assert.ok(cert.keyUsage?.includes(SERVER_AUTH_OID), `EKU: ${String(cert.keyUsage)}`);

  // Serial: 16 random bytes, positive.
  assert.match(cert.serialNumber, /^[0-7][0-9A-F]{31}$/i);

  // Validity: notBefore = now - 1h, notAfter = now + 30d (X.509 times have 1s resolution).
  const validFrom = new Date(cert.validFrom).getTime();
  const validTo = new Date(cert.validTo).getTime();
  assert.ok(validFrom >= before - HOUR - 1000 && validFrom <= after - HOUR, `validFrom ${cert.validFrom}`);
  assert.ok(validTo >= before + 30 * DAY - 1000 && validTo <= after + 30 * DAY, `validTo ${cert.validTo}`);
  assert.equal(pair.notAfter.getTime(), validTo);

  assert.equal(pair.fingerprint256, cert.fingerprint256);
  assert.match(pair.fingerprint256, /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
});

test("createSelfSignedCert: custom commonName, altNames and days", async () => {
  const pair = await createSelfSignedCert({
    commonName: "dev.example.test",
    altNames: ["dev.example.test", "*.dev.example.test", "10.1.2.3", "fe80::1", "[::1]"],
    days: 2,
  });
  const cert = new X509Certificate(pair.certPem);
  assert.equal(cert.subject, "CN=dev.example.test");
  const san = cert.subjectAltName ?? "";
  assert.ok(san.includes("DNS:dev.example.test"), san);
  assert.ok(san.includes("DNS:*.dev.example.test"), san);
  assert.ok(san.includes("IP Address:10.1.2.3"), san);
  assert.ok(!san.includes("DNS:localhost"), "defaults must be replaced, not merged");
  assert.equal(cert.checkHost("dev.example.test"), "dev.example.test");
  // checkHost returns the matching SAN entry, i.e. the wildcard.
  assert.equal(cert.checkHost("api.dev.example.test"), "*.dev.example.test");
  assert.equal(cert.checkHost("localhost"), undefined);
  assert.equal(cert.checkIP("10.1.2.3"), "10.1.2.3");
  assert.equal(cert.checkIP("fe80::1"), "fe80::1");
  assert.equal(cert.checkIP("::1"), "::1");
  assert.equal(cert.checkIP("127.0.0.1"), undefined);

  const validTo = new Date(cert.validTo).getTime();
  assert.ok(Math.abs(validTo - (Date.now() + 2 * DAY)) < 60_000, cert.validTo);
  assert.equal(pair.fingerprint256, cert.fingerprint256);

  // Every call makes a fresh key and serial.
  const other = await createSelfSignedCert();
  assert.notEqual(new X509Certificate(other.certPem).serialNumber, cert.serialNumber);
  assert.notEqual(other.keyPem, pair.keyPem);
});

test("createSelfSignedCert: rejects bad options", async () => {
  await assert.rejects(createSelfSignedCert({ days: 0 }), /days/);
  await assert.rejects(createSelfSignedCert({ days: Number.NaN }), /days/);
  await assert.rejects(createSelfSignedCert({ altNames: [] }), /alternative name/);
  await assert.rejects(createSelfSignedCert({ altNames: ["  "] }), /alternative name/);
});

test("a real TLS handshake verifies against the certificate", async (t) => {
  const pair = await createSelfSignedCert();
  const server = await startServer(pair);
  t.after(server.close);

  await t.test("node https.request with ca + servername localhost", async () => {
    const res = await get({ host: "127.0.0.1", port: server.port, ca: pair.certPem, servername: "localhost" });
    assert.equal(res.status, 200);
    assert.equal(res.body, "hello over tls");
    assert.equal(res.authorized, true);
  });

  await t.test("node https.request by IP (IP SAN)", async () => {
    const res = await get({ host: "127.0.0.1", port: server.port, ca: pair.certPem });
    assert.equal(res.status, 200);
    assert.equal(res.authorized, true);
  });

  await t.test("node https.request without the CA is rejected", async () => {
    await assert.rejects(
      get({ host: "127.0.0.1", port: server.port, servername: "localhost" }),
      (err: NodeJS.ErrnoException) => err.code === "DEPTH_ZERO_SELF_SIGNED_CERT",
    );
  });

  await t.test("node https.request for a name not in the SAN is rejected", async () => {
    await assert.rejects(
      get({ host: "127.0.0.1", port: server.port, ca: pair.certPem, servername: "example.com" }),
      (err: NodeJS.ErrnoException) => err.code === "ERR_TLS_CERT_ALTNAME_INVALID",
    );
  });

  await t.test("openssl s_client -verify_return_error -CAfile", async (st) => {
    if (!HAVE_OPENSSL) {
      st.skip("openssl binary not found");
      return;
    }
    await withTmpDir(async (dir) => {
      const caFile = path.join(dir, "cert.pem");
      await writeFile(caFile, pair.certPem);
      for (const check of [
        ["-servername", "localhost", "-verify_hostname", "localhost"],
        ["-verify_ip", "127.0.0.1"],
      ]) {
        const { code, stdout, stderr } = await run("openssl", [
          "s_client",
          "-connect",
          `127.0.0.1:${server.port}`,
          "-verify_return_error",
          "-CAfile",
          caFile,
          ...check,
        ]);
        assert.equal(code, 0, `openssl ${check.join(" ")} failed:\n${stderr}\n${stdout}`);
        assert.match(stdout, /Verify return code: 0 \(ok\)/);
      }

      // And a wrong hostname must fail, proving -verify_return_error is effective.
      const bad = await run("openssl", [
        "s_client",
        "-connect",
        `127.0.0.1:${server.port}`,
        "-verify_return_error",
        "-CAfile",
        caFile,
        "-servername",
        "example.com",
        "-verify_hostname",
        "example.com",
      ]);
      assert.notEqual(bad.code, 0);
    });
  });
});

test("certificate extensions as decoded by openssl", async (t) => {
  if (!HAVE_OPENSSL) {
    t.skip("openssl binary not found");
    return;
  }
  const pair = await createSelfSignedCert();
  await withTmpDir(async (dir) => {
    const file = path.join(dir, "cert.pem");
    await writeFile(file, pair.certPem);
    const { code, stdout, stderr } = await run("openssl", ["x509", "-in", file, "-noout", "-text"]);
    assert.equal(code, 0, stderr);
    assert.match(stdout, /Version: 3 \(0x2\)/);
    assert.match(stdout, /Signature Algorithm: ecdsa-with-SHA256/);
    assert.match(stdout, /NIST CURVE: P-256|ASN1 OID: prime256v1/);
    assert.match(stdout, /X509v3 Basic Constraints: critical\s+CA:FALSE/);
    assert.match(stdout, /X509v3 Key Usage: critical\s+Digital Signature\s*\n/);
    assert.match(stdout, /X509v3 Extended Key Usage:\s*\n\s+TLS Web Server Authentication\s*\n/);
    assert.match(stdout, /X509v3 Subject Alternative Name:\s*\n\s+DNS:localhost, IP Address:127\.0\.0\.1, IP Address:0:0:0:0:0:0:0:1/);
  });
});

test("writeCertFiles: creates dir, modes 0644/0600, contents", async () => {
  const pair = await createSelfSignedCert();
  await withTmpDir(async (tmp) => {
    const dir = path.join(tmp, "nested", "certs");
    const { certPath, keyPath } = await writeCertFiles(dir, pair);
    assert.equal(certPath, path.join(dir, "cert.pem"));
    assert.equal(keyPath, path.join(dir, "key.pem"));
    assert.equal(await readFile(certPath, "utf8"), pair.certPem);
    assert.equal(await readFile(keyPath, "utf8"), pair.keyPem);

    const umask = process.umask();
    assert.equal((await stat(keyPath)).mode & 0o777, 0o600 & ~umask);
    assert.equal((await stat(certPath)).mode & 0o777, 0o644 & ~umask);
  });
});

test("writeCertFiles: missing directories are created 0700 even under umask 000; an existing one keeps its mode", async () => {
  const pair = await createSelfSignedCert();
  await withTmpDir(async (tmp) => {
    const existing = path.join(tmp, "existing");
    await mkdir(existing, { mode: 0o755 });
    await chmod(existing, 0o755);
    const dir = path.join(existing, "a", "b");
    const before = process.umask(0);
    try {
      await writeCertFiles(dir, pair);
      await writeCertFiles(existing, pair);
    } finally {
      process.umask(before);
    }
    const mode = async (p: string): Promise<string> => ((await stat(p)).mode & 0o777).toString(8);
    assert.equal(await mode(path.join(existing, "a")), "700", "a created parent: no other user may rename files in it");
    assert.equal(await mode(dir), "700", "the directory holding key.pem");
    assert.equal(await mode(path.join(dir, "key.pem")), "600");
    assert.equal(await mode(path.join(dir, "cert.pem")), "644");
    assert.equal(await mode(existing), "755", "an existing directory is the admin's: left alone");
    assert.equal(await mode(path.join(existing, "key.pem")), "600");
  });
});

test("writeCertFiles: refuses to overwrite without force", async () => {
  const first = await createSelfSignedCert();
  const second = await createSelfSignedCert();
  await withTmpDir(async (dir) => {
    const { certPath, keyPath } = await writeCertFiles(dir, first);

    await assert.rejects(writeCertFiles(dir, second), (err: Error) => {
      assert.match(err.message, /cert\.pem|key\.pem/);
      assert.match(err.message, /already exists/);
      assert.match(err.message, /--force/);
      return true;
    });
    assert.equal(await readFile(certPath, "utf8"), first.certPem, "cert.pem must be untouched");
    assert.equal(await readFile(keyPath, "utf8"), first.keyPem, "key.pem must be untouched");

    // Only key.pem present: still refuses, names key.pem, writes nothing.
    await rm(certPath);
    await assert.rejects(writeCertFiles(dir, second), (err: Error) => {
      assert.ok(err.message.includes(keyPath), err.message);
      assert.match(err.message, /--force/);
      return true;
    });
    await assert.rejects(stat(certPath), { code: "ENOENT" });
  });
});

test("writeCertFiles: force overwrites and re-creates key.pem as 0600", async () => {
  const first = await createSelfSignedCert();
  const second = await createSelfSignedCert();
  await withTmpDir(async (dir) => {
    const { certPath, keyPath } = await writeCertFiles(dir, first);
    // Simulate a key.pem that someone made world-readable: force must not keep that mode.
    await chmod(keyPath, 0o644);

    const res = await writeCertFiles(dir, second, { force: true });
    assert.deepEqual(res, { certPath, keyPath });
    assert.equal(await readFile(certPath, "utf8"), second.certPem);
    assert.equal(await readFile(keyPath, "utf8"), second.keyPem);
    const umask = process.umask();
    assert.equal((await stat(keyPath)).mode & 0o777, 0o600 & ~umask);
    assert.equal((await stat(certPath)).mode & 0o777, 0o644 & ~umask);
  });
});
