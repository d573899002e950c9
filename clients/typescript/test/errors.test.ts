/**
 * errorFromStatus on statuses built here with the generated google.rpc
 * messages, and the class table against the Python one (the docstring of
 * clients/python/modelyard_client/errors/__init__.py), so a reason added there fails here
 * until this client knows it.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";

import { Metadata } from "@grpc/grpc-js";

import {
  AllModelsFailed,
  BackendUnavailable,
  Code,
  ERROR_CLASSES,
  InvalidRequest,
  ModelNotFound,
  ModelyardError,
  NotFound,
  Overloaded,
  RateLimited,
  RequestTooLarge,
  STATUS_DETAILS_KEY,
  errorFromCall,
  errorFromStatus,
} from "../src/index";
import { Any } from "../src/gen/google/protobuf/any";
import { BadRequest, ErrorInfo, RetryInfo } from "../src/gen/google/rpc/error_details";
import { Status } from "../src/gen/google/rpc/status";
import { ROOT } from "./stack";

function pack(type: string, value: Uint8Array): Any {
  return { typeUrl: `type.googleapis.com/${type}`, value: Buffer.from(value) };
}

function trailers(code: Code, message: string, details: Any[], extra: Record<string, string> = {}): Metadata {
  const md = new Metadata();
  md.set(STATUS_DETAILS_KEY, Buffer.from(Status.encode({ code, message, details }).finish()));
  for (const [k, v] of Object.entries(extra)) {
    md.set(k, v);
  }
  return md;
}

function info(reason: string, metadata: Record<string, string> = {}, domain = "modelyard"): Any {
  return pack("google.rpc.ErrorInfo", ErrorInfo.encode({ reason, domain, metadata }).finish());
}

describe("errorFromStatus", () => {
  it("rebuilds the class of the reason with ErrorInfo, RetryInfo and BadRequest", () => {
    const err = errorFromStatus(
      Code.RESOURCE_EXHAUSTED,
      "ignored: the trailer's message wins",
      trailers(Code.RESOURCE_EXHAUSTED, "busy; retry after 7.250s", [
        info("OVERLOADED", { scope: "backend" }),
        pack("google.rpc.RetryInfo", RetryInfo.encode({ retryDelay: { seconds: 7, nanos: 250_000_000 } }).finish()),
        pack(
          "google.rpc.BadRequest",
          BadRequest.encode({
            fieldViolations: [{ field: "params.max_tokens", description: "must be >= 0", reason: "", localizedMessage: undefined }],
          }).finish(),
        ),
      ]),
    );
    assert.ok(err instanceof Overloaded && err instanceof RateLimited && err instanceof ModelyardError);
    assert.equal(err.name, "Overloaded");
    assert.equal(err.message, "busy; retry after 7.250s");
    assert.equal(err.reason, "OVERLOADED");
    assert.deepEqual(err.metadata, { scope: "backend" });
    assert.equal(err.retryDelayMs, 7250);
    assert.deepEqual(err.fieldViolations, [{ field: "params.max_tokens", description: "must be >= 0" }]);
  });

  it("prefers the modelyard ErrorInfo over another domain's", () => {
    const err = errorFromStatus(
      Code.NOT_FOUND,
      "",
      trailers(Code.NOT_FOUND, "model 'a/b' is not in the catalog", [
        info("NOT_HERE", {}, "example.com"),
        info("MODEL_NOT_FOUND", { model_id: "a/b" }),
      ]),
    );
    assert.ok(err instanceof ModelNotFound);
    assert.equal(err.metadata["model_id"], "a/b");
  });

  it("falls back to the code without details, with an unknown reason, or when the trailer disagrees", () => {
    const bare = errorFromStatus(Code.UNAVAILABLE, "connection refused");
    assert.equal(bare.constructor, BackendUnavailable);
    assert.equal(bare.reason, "");
    assert.equal(bare.fromModelyard, false);
    const unknown = errorFromStatus(Code.NOT_FOUND, "", trailers(Code.NOT_FOUND, "gone", [info("FROM_THE_FUTURE")]));
    assert.equal(unknown.constructor, NotFound);
    assert.equal(unknown.reason, "FROM_THE_FUTURE");
    const stale = errorFromStatus(Code.INTERNAL, "boom", trailers(Code.NOT_FOUND, "gone", [info("MODEL_NOT_FOUND")]));
    assert.equal(stale.constructor, ModelyardError);
    assert.equal(stale.message, "boom");
    assert.equal(stale.code, Code.INTERNAL);
  });

  it("makes RESOURCE_EXHAUSTED RateLimited with a retry-after-ms trailer and RequestTooLarge without", () => {
    const md = new Metadata();
    md.set("retry-after-ms", "7000");
    const limited = errorFromStatus(Code.RESOURCE_EXHAUSTED, "slow down", md);
    assert.equal(limited.constructor, RateLimited);
    assert.equal(limited.retryDelayMs, 7000);
    assert.equal(errorFromStatus(Code.RESOURCE_EXHAUSTED, "too big").constructor, RequestTooLarge);
  });

  it("decodes an AllModelsFailed's attempts", () => {
    const attempts = [{ model_id: "a/one", code: "UNAVAILABLE", reason: "BACKEND_UNAVAILABLE", message: "down" }];
    const err = errorFromStatus(
      Code.UNAVAILABLE,
      "",
      trailers(Code.UNAVAILABLE, "every model failed", [info("ALL_MODELS_FAILED", { attempts: JSON.stringify(attempts) })]),
    );
    assert.ok(err instanceof AllModelsFailed);
    assert.deepEqual(err.attempts, attempts);
  });

  it("turns a grpc-js ServiceError into the typed error and leaves other values alone", () => {
    const serviceError = Object.assign(new Error("3 INVALID_ARGUMENT: bad"), {
      code: Code.INVALID_ARGUMENT,
      details: "bad",
      metadata: new Metadata(),
    });
    const err = errorFromCall(serviceError);
    assert.ok(err instanceof InvalidRequest);
    assert.equal(err.message, "bad");
    const plain = new TypeError("not a call");
    assert.equal(errorFromCall(plain), plain);
  });
});

describe("the class table", () => {
  it("has every class of modelyard_client.errors with its code and reason", () => {
    const doc = readFileSync(join(ROOT, "clients", "python", "modelyard_client", "errors", "__init__.py"), "utf8");
    const rows = [...doc.matchAll(/^([A-Z]\w+)\s+([A-Z_]+)\s+([A-Z_]+)\b.*$/gm)].map(([, name, code, reason]) => ({
      name,
      code,
      reason,
    }));
    assert.ok(rows.length >= 39, `read ${rows.length} rows of the Python table`);
    const ours = ERROR_CLASSES.map((cls) => ({ name: cls.name, code: Code[cls.code], reason: cls.reason }));
    const byName = (a: { name?: string }, b: { name?: string }): number => (a.name! < b.name! ? -1 : 1);
    assert.deepEqual(ours.sort(byName), rows.sort(byName));
  });
});
