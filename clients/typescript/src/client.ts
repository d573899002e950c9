/**
 * A thin typed client of a modelyard stack: GatewayService's Generate,
 * GenerateStream and Embed, and RegistryService's ListModels, over one gRPC
 * channel (@grpc/grpc-js). Every failed call rejects (or throws from the
 * stream's loop) with the ModelyardError subclass the server raised.
 */
import { Metadata, credentials } from "@grpc/grpc-js";
import type { CallOptions, ChannelCredentials, ChannelOptions } from "@grpc/grpc-js";

import { errorFromCall } from "./errors";
import {
  type DeepPartial,
  EmbedRequest,
  type EmbedResponse,
  GatewayServiceClient,
  type GenerateChunk,
  GenerateRequest,
  type GenerateResponse,
} from "./gen/modelyard/v1/gateway";
import { ListModelsRequest, type ListModelsResponse, RegistryServiceClient } from "./gen/modelyard/v1/registry";

export type { DeepPartial };

export interface ClientOptions {
  /** Default: plaintext (`credentials.createInsecure()`). */
  credentials?: ChannelCredentials;
  channelOptions?: Partial<ChannelOptions>;
}

/** Per-call settings: a deadline in milliseconds from the call, request metadata. */
export interface CallSettings {
  timeoutMs?: number;
  metadata?: Metadata;
}

/** A GenerateRequest for one user message to `model` (a catalog id or an alias). */
export function chatRequest(model: string, prompt: string, maxTokens = 0): DeepPartial<GenerateRequest> {
  const request: DeepPartial<GenerateRequest> = {
    model,
    input: { chat: { messages: [{ role: "user", content: prompt }] } },
  };
  if (maxTokens > 0) {
    request.params = { maxTokens };
  }
  return request;
}

type UnaryCall<Req, Resp> = (
  request: Req,
  metadata: Metadata,
  options: Partial<CallOptions>,
  callback: (error: Error | null, response: Resp) => void,
) => unknown;

export class ModelyardClient {
  /** The generated clients, for every other call; the two share one channel. */
  readonly gateway: GatewayServiceClient;
  readonly registry: RegistryServiceClient;

  /** `target` is "host:port". The channel connects lazily, on the first call. */
  constructor(target: string, options: ClientOptions = {}) {
    const creds = options.credentials ?? credentials.createInsecure();
    this.gateway = new GatewayServiceClient(target, creds, options.channelOptions);
    this.registry = new RegistryServiceClient(target, creds, {
      ...options.channelOptions,
      channelOverride: this.gateway.getChannel(),
    });
  }

  close(): void {
    this.gateway.close();
  }

  /** One unary call: the whole answer. */
  generate(request: DeepPartial<GenerateRequest>, settings: CallSettings = {}): Promise<GenerateResponse> {
    return unary(this.gateway.generate.bind(this.gateway), GenerateRequest.fromPartial(request), settings);
  }

  /**
   * One streamed answer, its chunks as they arrive. Leaving the loop early
   * (break, return, a throw) cancels the call.
   */
  async *generateStream(
    request: DeepPartial<GenerateRequest>,
    settings: CallSettings = {},
  ): AsyncGenerator<GenerateChunk, void, undefined> {
    const stream = this.gateway.generateStream(
      GenerateRequest.fromPartial(request),
      settings.metadata ?? new Metadata(),
      callOptions(settings),
    );
    let ended = false;
    try {
      for await (const chunk of stream) {
        yield chunk as GenerateChunk;
      }
      ended = true;
    } catch (err) {
      ended = true;
      throw errorFromCall(err);
    } finally {
      if (!ended) {
        stream.cancel();
      }
    }
  }

  /** Vectors for texts, one per input in order, from an embedding model. */
  embed(request: DeepPartial<EmbedRequest>, settings: CallSettings = {}): Promise<EmbedResponse> {
    return unary(this.gateway.embed.bind(this.gateway), EmbedRequest.fromPartial(request), settings);
  }

  /** The catalog (RegistryService.ListModels), filtered as `request` says. */
  listModels(request: DeepPartial<ListModelsRequest> = {}, settings: CallSettings = {}): Promise<ListModelsResponse> {
    return unary(this.registry.listModels.bind(this.registry), ListModelsRequest.fromPartial(request), settings);
  }
}

function unary<Req, Resp>(call: UnaryCall<Req, Resp>, request: Req, settings: CallSettings): Promise<Resp> {
  return new Promise((resolve, reject) => {
    call(request, settings.metadata ?? new Metadata(), callOptions(settings), (error, response) => {
      if (error) {
        reject(errorFromCall(error));
      } else {
        resolve(response);
      }
    });
  });
}

function callOptions(settings: CallSettings): Partial<CallOptions> {
  return settings.timeoutMs === undefined ? {} : { deadline: Date.now() + settings.timeoutMs };
}
