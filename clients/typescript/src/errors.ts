/**
 * The modelyard error hierarchy on the client side, rebuilt from a failed
 * call's status.
 *
 * A modelyard service sends every error as Google's richer error model: a
 * `google.rpc.Status` in the `grpc-status-details-bin` trailer carrying an
 * `ErrorInfo` (domain "modelyard", a reason, string metadata), a `RetryInfo`
 * when the caller may retry later and a `BadRequest` naming wrong fields. The
 * classes here are the Python package `modelyard.errors`'s, by the same names,
 * codes and reasons (its docstring is the table; test/errors.test.ts checks
 * that this file agrees with it), so `err instanceof ModelNotFound` and
 * `err.metadata.model_id` work as they do in Python.
 */
import { Metadata, status as Code } from "@grpc/grpc-js";
import type { ServiceError } from "@grpc/grpc-js";

import { BadRequest, ErrorInfo, RetryInfo } from "./gen/google/rpc/error_details";
import { Status } from "./gen/google/rpc/status";

export { Code };

/** The google.rpc.ErrorInfo domain of every error a modelyard service sends. */
export const DOMAIN = "modelyard";
/** The trailer holding the serialized google.rpc.Status. */
export const STATUS_DETAILS_KEY = "grpc-status-details-bin";
/** The retry delay in milliseconds, for clients that do not read the details. */
export const RETRY_AFTER_MS_KEY = "retry-after-ms";

const TYPE_PREFIX = "type.googleapis.com/";

/** One wrong request field ("params.max_tokens") and what is wrong with it. */
export interface FieldViolation {
  field: string;
  description: string;
}

/** How one model of a fallback chain failed (an `AllModelsFailed`'s attempts). */
export interface Attempt {
  model_id: string;
  code: string; // the gRPC code's name: "UNAVAILABLE"
  reason: string; // the error's reason: "BACKEND_UNAVAILABLE"
  message: string;
}

/** What the status details carried besides the code and message. */
export interface ErrorDetails {
  /** The ErrorInfo's reason; "" when the status carried no modelyard ErrorInfo. */
  reason: string;
  domain: string;
  metadata: Record<string, string>;
  /** From RetryInfo (or the retry-after-ms trailer); undefined: no delay given. */
  retryDelayMs: number | undefined;
  fieldViolations: FieldViolation[];
}

const NO_DETAILS: ErrorDetails = {
  reason: "",
  domain: "",
  metadata: {},
  retryDelayMs: undefined,
  fieldViolations: [],
};

/** The base class: a failed call as the server described it. */
export class ModelyardError extends Error {
  static readonly code: Code = Code.INTERNAL;
  static readonly reason: string = "INTERNAL";

  /** The gRPC status code of the call. */
  readonly code: Code;
  /** The ErrorInfo reason sent; "" from another server or the transport. */
  readonly reason: string;
  readonly domain: string;
  /** The ErrorInfo metadata: the error's attributes (`model_id`, ...). */
  readonly metadata: Record<string, string>;
  readonly retryDelayMs: number | undefined;
  readonly fieldViolations: FieldViolation[];

  constructor(message: string, code?: Code, details: ErrorDetails = NO_DETAILS) {
    super(message);
    const cls = new.target as typeof ModelyardError;
    this.name = cls.name;
    this.code = code ?? cls.code;
    this.reason = details.reason;
    this.domain = details.domain;
    this.metadata = { ...details.metadata };
    this.retryDelayMs = details.retryDelayMs;
    this.fieldViolations = [...details.fieldViolations];
  }

  /** Whether a modelyard service described this error (its ErrorInfo has DOMAIN). */
  get fromModelyard(): boolean {
    return this.domain === DOMAIN;
  }
}

export class InvalidRequest extends ModelyardError {
  static override readonly code: Code = Code.INVALID_ARGUMENT;
  static override readonly reason: string = "INVALID_REQUEST";
}
export class ConfigError extends InvalidRequest {
  static override readonly reason: string = "INVALID_CONFIG";
}
export class ConfigFileUnreadable extends ConfigError {
  static override readonly reason: string = "CONFIG_FILE_UNREADABLE";
}
/** metadata.provider_code: the provider's own code for the refusal. */
export class ProviderRefusal extends InvalidRequest {
  static override readonly reason: string = "PROVIDER_REFUSED";
}
export class ContextLengthExceeded extends ProviderRefusal {
  static override readonly reason: string = "CONTEXT_LENGTH_EXCEEDED";
}
export class ContentRejected extends ProviderRefusal {
  static override readonly reason: string = "CONTENT_REJECTED";
}
export class ContentBlocked extends InvalidRequest {
  static override readonly reason: string = "CONTENT_BLOCKED";
}
export class RequestTooLarge extends ModelyardError {
  static override readonly code: Code = Code.RESOURCE_EXHAUSTED;
  static override readonly reason: string = "REQUEST_TOO_LARGE";
}
export class QuotaNeverFits extends RequestTooLarge {
  static override readonly reason: string = "QUOTA_NEVER_FITS";
}
export class NotFound extends ModelyardError {
  static override readonly code: Code = Code.NOT_FOUND;
  static override readonly reason: string = "NOT_FOUND";
}
/** metadata.model_id: the model asked for. */
export class ModelNotFound extends NotFound {
  static override readonly reason: string = "MODEL_NOT_FOUND";
}
export class AlreadyExists extends ModelyardError {
  static override readonly code: Code = Code.ALREADY_EXISTS;
  static override readonly reason: string = "ALREADY_EXISTS";
}
/** retryDelayMs: when to try again. */
export class RateLimited extends ModelyardError {
  static override readonly code: Code = Code.RESOURCE_EXHAUSTED;
  static override readonly reason: string = "RATE_LIMITED";
}
export class Overloaded extends RateLimited {
  static override readonly reason: string = "OVERLOADED";
}
export class QuotaExceeded extends RateLimited {
  static override readonly reason: string = "QUOTA_EXCEEDED";
}
export class BudgetExceeded extends RateLimited {
  static override readonly reason: string = "BUDGET_EXCEEDED";
}
export class TooManyStreams extends ModelyardError {
  static override readonly code: Code = Code.RESOURCE_EXHAUSTED;
  static override readonly reason: string = "TOO_MANY_STREAMS";
}
export class FailedPrecondition extends ModelyardError {
  static override readonly code: Code = Code.FAILED_PRECONDITION;
  static override readonly reason: string = "FAILED_PRECONDITION";
}
export class NoSuitableModel extends ModelyardError {
  static override readonly code: Code = Code.FAILED_PRECONDITION;
  static override readonly reason: string = "NO_SUITABLE_MODEL";
}
export class WatcherFellBehind extends FailedPrecondition {
  static override readonly reason: string = "WATCHER_FELL_BEHIND";
}
export class MemoryBudgetExceeded extends FailedPrecondition {
  static override readonly reason: string = "MEMORY_BUDGET_EXCEEDED";
}
export class BackendUnavailable extends ModelyardError {
  static override readonly code: Code = Code.UNAVAILABLE;
  static override readonly reason: string = "BACKEND_UNAVAILABLE";
}
export class AllModelsFailed extends BackendUnavailable {
  static override readonly reason: string = "ALL_MODELS_FAILED";

  /** The failed models in the order tried (metadata "attempts", a JSON list). */
  get attempts(): Attempt[] {
    const text = this.metadata["attempts"];
    return text === undefined ? [] : (JSON.parse(text) as Attempt[]);
  }
}
export class RateLimiterUnavailable extends ModelyardError {
  static override readonly code: Code = Code.UNAVAILABLE;
  static override readonly reason: string = "RATE_LIMITER_UNAVAILABLE";
}
export class ProviderError extends ModelyardError {
  static override readonly code: Code = Code.UNKNOWN;
  static override readonly reason: string = "PROVIDER_ERROR";
}
/** The provider's key was refused, not the caller's. */
export class ProviderAuthFailed extends ProviderError {
  static override readonly code: Code = Code.UNAUTHENTICATED;
  static override readonly reason: string = "PROVIDER_AUTH_FAILED";
}
export class ProviderAccessDenied extends ProviderAuthFailed {
  static override readonly code: Code = Code.PERMISSION_DENIED;
  static override readonly reason: string = "PROVIDER_ACCESS_DENIED";
}
export class ProviderProtocolError extends ProviderError {
  static override readonly reason: string = "PROVIDER_PROTOCOL_ERROR";
}
export class StreamTruncated extends ProviderError {
  static override readonly code: Code = Code.ABORTED;
  static override readonly reason: string = "STREAM_TRUNCATED";
}
export class OutputSchemaMismatch extends ModelyardError {
  static override readonly code: Code = Code.ABORTED;
  static override readonly reason: string = "OUTPUT_SCHEMA_MISMATCH";
}
export class SlowReaderCut extends ModelyardError {
  static override readonly code: Code = Code.ABORTED;
  static override readonly reason: string = "SLOW_READER";
}
export class DeadlineExceeded extends ModelyardError {
  static override readonly code: Code = Code.DEADLINE_EXCEEDED;
  static override readonly reason: string = "DEADLINE_EXCEEDED";
}
export class FirstTokenTimeout extends DeadlineExceeded {
  static override readonly reason: string = "FIRST_TOKEN_TIMEOUT";
}
export class StreamStalled extends DeadlineExceeded {
  static override readonly reason: string = "STREAM_STALLED";
}
export class Unimplemented extends ModelyardError {
  static override readonly code: Code = Code.UNIMPLEMENTED;
  static override readonly reason: string = "UNIMPLEMENTED";
}
export class CatalogFileError extends ModelyardError {
  static override readonly reason: string = "CATALOG_FILE_INVALID";
}
/** The caller's modelyard key: missing, unknown, expired or revoked. */
export class Unauthenticated extends ModelyardError {
  static override readonly code: Code = Code.UNAUTHENTICATED;
  static override readonly reason: string = "UNAUTHENTICATED";
}
/** The caller's key lacks the scope or the model. */
export class PermissionDenied extends ModelyardError {
  static override readonly code: Code = Code.PERMISSION_DENIED;
  static override readonly reason: string = "PERMISSION_DENIED";
}

export type ErrorClass = typeof ModelyardError;

/** Every class, one per reason. */
export const ERROR_CLASSES: readonly ErrorClass[] = [
  ModelyardError,
  InvalidRequest,
  ConfigError,
  ConfigFileUnreadable,
  ProviderRefusal,
  ContextLengthExceeded,
  ContentRejected,
  ContentBlocked,
  RequestTooLarge,
  QuotaNeverFits,
  NotFound,
  ModelNotFound,
  AlreadyExists,
  RateLimited,
  Overloaded,
  QuotaExceeded,
  BudgetExceeded,
  TooManyStreams,
  FailedPrecondition,
  NoSuitableModel,
  WatcherFellBehind,
  MemoryBudgetExceeded,
  BackendUnavailable,
  AllModelsFailed,
  RateLimiterUnavailable,
  ProviderError,
  ProviderAuthFailed,
  ProviderAccessDenied,
  ProviderProtocolError,
  StreamTruncated,
  OutputSchemaMismatch,
  SlowReaderCut,
  DeadlineExceeded,
  FirstTokenTimeout,
  StreamStalled,
  Unimplemented,
  CatalogFileError,
  Unauthenticated,
  PermissionDenied,
];

const BY_REASON: ReadonlyMap<string, ErrorClass> = new Map(ERROR_CLASSES.map((c) => [c.reason, c]));

/** A status without a modelyard ErrorInfo (or with an unknown reason) maps by its code. */
const BY_CODE: ReadonlyMap<Code, ErrorClass> = new Map<Code, ErrorClass>([
  [Code.INVALID_ARGUMENT, InvalidRequest],
  [Code.NOT_FOUND, NotFound],
  [Code.ALREADY_EXISTS, AlreadyExists],
  [Code.FAILED_PRECONDITION, FailedPrecondition],
  [Code.UNAVAILABLE, BackendUnavailable],
  [Code.UNKNOWN, ProviderError],
  [Code.ABORTED, StreamTruncated],
  [Code.DEADLINE_EXCEEDED, DeadlineExceeded],
  [Code.UNIMPLEMENTED, Unimplemented],
]);

/** The class of `reason`, undefined for a reason this version does not know. */
export function classForReason(reason: string): ErrorClass | undefined {
  return BY_REASON.get(reason);
}

function classForCode(code: Code, details: ErrorDetails): ErrorClass {
  if (code === Code.RESOURCE_EXHAUSTED) {
    return details.retryDelayMs !== undefined ? RateLimited : RequestTooLarge;
  }
  return BY_CODE.get(code) ?? ModelyardError;
}

function readDetails(status: Status, trailers: Metadata | undefined): ErrorDetails {
  let info: ErrorInfo | undefined;
  let retryDelayMs: number | undefined;
  const fieldViolations: FieldViolation[] = [];
  for (const any of status.details) {
    const type = any.typeUrl.startsWith(TYPE_PREFIX) ? any.typeUrl.slice(TYPE_PREFIX.length) : "";
    if (type === "google.rpc.ErrorInfo") {
      const candidate = ErrorInfo.decode(any.value);
      if (candidate.domain === DOMAIN && info === undefined) {
        info = candidate;
      }
    } else if (type === "google.rpc.RetryInfo") {
      const delay = RetryInfo.decode(any.value).retryDelay;
      if (delay !== undefined) {
        retryDelayMs = delay.seconds * 1000 + delay.nanos / 1e6;
      }
    } else if (type === "google.rpc.BadRequest") {
      for (const v of BadRequest.decode(any.value).fieldViolations) {
        fieldViolations.push({ field: v.field, description: v.description });
      }
    }
  }
  if (retryDelayMs === undefined) {
    const trailer = trailers?.get(RETRY_AFTER_MS_KEY)[0];
    if (trailer !== undefined && /^\d+$/.test(String(trailer))) {
      retryDelayMs = Number(trailer);
    }
  }
  return {
    reason: info?.reason ?? "",
    domain: info?.domain ?? "",
    metadata: info ? { ...info.metadata } : {},
    retryDelayMs,
    fieldViolations,
  };
}

/**
 * The error a failed call's code, message and trailers describe, as the
 * exact class the server raised. The class comes from the modelyard
 * ErrorInfo's reason; without one (another server, the transport), with a
 * reason this version does not know, or with a details trailer that
 * disagrees with the code, the code picks the class.
 */
export function errorFromStatus(code: Code, message: string, trailers?: Metadata): ModelyardError {
  let status: Status = { code, message, details: [] };
  const raw = trailers?.get(STATUS_DETAILS_KEY)[0];
  if (raw instanceof Uint8Array) {
    const sent = Status.decode(raw);
    if (sent.code === code) {
      status = sent;
    }
  }
  const details = readDetails(status, trailers);
  let cls = classForReason(details.reason);
  if (cls === undefined || cls.code !== code) {
    cls = classForCode(code, details);
  }
  return new cls(status.message, code, details);
}

function isServiceError(err: unknown): err is ServiceError {
  return (
    err instanceof Error &&
    typeof (err as Partial<ServiceError>).code === "number" &&
    (err as Partial<ServiceError>).metadata instanceof Metadata
  );
}

/** A failed call's grpc-js error as a ModelyardError; any other value unchanged. */
export function errorFromCall(err: unknown): unknown {
  if (err instanceof ModelyardError || !isServiceError(err)) {
    return err;
  }
  return errorFromStatus(err.code, err.details, err.metadata);
}
