export * from "./client";
export * from "./errors";
export { Capability, FinishReason } from "./gen/modelyard/v1/common";
// Every generated message and service client, by proto file.
export * as commonV1 from "./gen/modelyard/v1/common";
export * as gatewayV1 from "./gen/modelyard/v1/gateway";
export * as registryV1 from "./gen/modelyard/v1/registry";
