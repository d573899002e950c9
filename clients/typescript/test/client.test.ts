/**
 * ModelyardClient against a running stack (test/stack.ts): a gateway,
 * registry and OpenAI-compatible backend in one `modelyard serve` process, in
 * front of the fake upstream from bench/.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import {
  Code,
  FinishReason,
  InvalidRequest,
  ModelNotFound,
  ModelyardClient,
  ModelyardError,
  NotFound,
  chatRequest,
} from "../src/index";
import { Stack, UPSTREAM_TEXT } from "./stack";

describe("ModelyardClient against a running stack", () => {
  let stack: Stack;
  let client: ModelyardClient;

  before(async () => {
    stack = await Stack.start();
    client = new ModelyardClient(stack.address);
  });

  after(async () => {
    client?.close();
    await stack?.stop();
  });

  it("streams an answer chunk by chunk", async () => {
    const texts: string[] = [];
    let modelId = "";
    let finish = FinishReason.FINISH_REASON_UNSPECIFIED;
    let outputTokens = 0;
    for await (const chunk of client.generateStream(chatRequest(stack.modelId, "Say hello.", 16), { timeoutMs: 30_000 })) {
      texts.push(chunk.text);
      modelId ||= chunk.modelId;
      if (chunk.finishReason !== FinishReason.FINISH_REASON_UNSPECIFIED) {
        finish = chunk.finishReason;
      }
      outputTokens = chunk.usage?.outputTokens ?? outputTokens;
    }
    assert.equal(texts.join(""), UPSTREAM_TEXT);
    assert.equal(modelId, stack.modelId);
    assert.equal(finish, FinishReason.FINISH_REASON_STOP);
    assert.equal(outputTokens, 6); // the fake upstream's usage: one token per piece
  });

  it("answers a unary call whole", async () => {
    const answer = await client.generate(chatRequest(stack.modelId, "Say hello.", 16), { timeoutMs: 30_000 });
    assert.equal(answer.text, UPSTREAM_TEXT);
    assert.equal(answer.modelId, stack.modelId);
    assert.equal(answer.finishReason, FinishReason.FINISH_REASON_STOP);
    assert.equal(answer.usage?.inputTokens, 8);
    assert.notEqual(answer.requestId, "");
  });

  it("lists the served model", async () => {
    const listed = await client.listModels({}, { timeoutMs: 30_000 });
    assert.ok(
      listed.models.some((m) => m.id === stack.modelId),
      `models: ${listed.models.map((m) => m.id).join(", ")}`,
    );
  });

  it("rejects an unknown model with ModelNotFound and its reason and metadata", async () => {
    const missing = "custom/no-such-model";
    const unary = client.generate(chatRequest(missing, "hi", 8), { timeoutMs: 30_000 });
    const err = await unary.then(
      () => assert.fail("Generate of an unknown model succeeded"),
      (e: unknown) => e,
    );
    assert.ok(err instanceof ModelNotFound, `got ${String(err)}`);
    assert.ok(err instanceof NotFound && err instanceof ModelyardError);
    assert.equal(err.code, Code.NOT_FOUND);
    assert.equal(err.reason, "MODEL_NOT_FOUND");
    assert.ok(err.fromModelyard);
    assert.equal(err.metadata["model_id"], missing);
    assert.match(err.message, /no-such-model/);
  });

  it("throws the typed error from a stream's loop", async () => {
    const read = async (): Promise<void> => {
      for await (const _ of client.generateStream(chatRequest("custom/no-such-model", "hi", 8))) {
        assert.fail("a chunk of an unknown model");
      }
    };
    await assert.rejects(read, (err: unknown) => err instanceof ModelNotFound && err.reason === "MODEL_NOT_FOUND");
  });

  it("refuses bad input with InvalidRequest naming the field", async () => {
    const err = await client.generate({ ...chatRequest(stack.modelId, "hi"), params: { maxTokens: -1 } }).then(
      () => assert.fail("Generate with max_tokens -1 succeeded"),
      (e: unknown) => e,
    );
    assert.ok(err instanceof InvalidRequest, `got ${String(err)}`);
    assert.equal(err.code, Code.INVALID_ARGUMENT);
    assert.deepEqual(
      err.fieldViolations.map((v) => v.field),
      ["params.max_tokens"],
    );
  });

  it("refuses an embedding from a model without CAPABILITY_EMBEDDING", async () => {
    await assert.rejects(
      client.embed({ model: stack.modelId, inputs: ["hello"] }, { timeoutMs: 30_000 }),
      (err: unknown) =>
        err instanceof InvalidRequest &&
        err.reason === "INVALID_REQUEST" &&
        err.fieldViolations.some((v) => v.field === "model" && v.description.includes("CAPABILITY_EMBEDDING")),
    );
  });
});
