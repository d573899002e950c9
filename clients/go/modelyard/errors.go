package modelyard

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Domain is the google.rpc.ErrorInfo domain of every error a modelyard
// service sends.
const Domain = "modelyard"

// The google.rpc.ErrorInfo reasons a modelyard service sends, one per class
// of the Python hierarchy (modelyard.errors, whose docstring is the table of
// classes, codes, reasons and metadata keys).
const (
	ReasonInternal               = "INTERNAL"
	ReasonInvalidRequest         = "INVALID_REQUEST"
	ReasonProviderRefused        = "PROVIDER_REFUSED"        // Metadata["provider_code"]
	ReasonContextLengthExceeded  = "CONTEXT_LENGTH_EXCEEDED" // Metadata["provider_code"]
	ReasonContentRejected        = "CONTENT_REJECTED"        // Metadata["provider_code"]
	ReasonInvalidConfig          = "INVALID_CONFIG"
	ReasonConfigFileUnreadable   = "CONFIG_FILE_UNREADABLE"
	ReasonRequestTooLarge        = "REQUEST_TOO_LARGE"
	ReasonQuotaNeverFits         = "QUOTA_NEVER_FITS"
	ReasonNotFound               = "NOT_FOUND"
	ReasonModelNotFound          = "MODEL_NOT_FOUND" // Metadata["model_id"]
	ReasonAlreadyExists          = "ALREADY_EXISTS"
	ReasonRateLimited            = "RATE_LIMITED" // RetryDelay
	ReasonQuotaExceeded          = "QUOTA_EXCEEDED"
	ReasonOverloaded             = "OVERLOADED" // RetryDelay, Metadata["scope"]
	ReasonFailedPrecondition     = "FAILED_PRECONDITION"
	ReasonNoSuitableModel        = "NO_SUITABLE_MODEL"
	ReasonWatcherFellBehind      = "WATCHER_FELL_BEHIND"
	ReasonMemoryBudgetExceeded   = "MEMORY_BUDGET_EXCEEDED" // Metadata["model_id"], ["sizes_mb"] (JSON), ["budget_mb"], ["max_loaded"]
	ReasonBackendUnavailable     = "BACKEND_UNAVAILABLE"
	ReasonAllModelsFailed        = "ALL_MODELS_FAILED" // Attempts()
	ReasonRateLimiterUnavailable = "RATE_LIMITER_UNAVAILABLE"
	ReasonProviderError          = "PROVIDER_ERROR"
	ReasonProviderAuthFailed     = "PROVIDER_AUTH_FAILED"   // the provider's key, not the caller's
	ReasonProviderAccessDenied   = "PROVIDER_ACCESS_DENIED" // the provider's key, not the caller's
	ReasonProviderProtocolError  = "PROVIDER_PROTOCOL_ERROR"
	ReasonStreamTruncated        = "STREAM_TRUNCATED"
	ReasonDeadlineExceeded       = "DEADLINE_EXCEEDED"
	ReasonFirstTokenTimeout      = "FIRST_TOKEN_TIMEOUT"
	ReasonStreamStalled          = "STREAM_STALLED"
	ReasonUnimplemented          = "UNIMPLEMENTED"
	ReasonCatalogFileInvalid     = "CATALOG_FILE_INVALID"
	ReasonUnauthenticated        = "UNAUTHENTICATED"        // the caller's modelyard key: missing, unknown, expired or revoked
	ReasonPermissionDenied       = "PERMISSION_DENIED"      // the caller's key lacks the scope or the model
	ReasonBudgetExceeded         = "BUDGET_EXCEEDED"        // Metadata["scope"], ["window"], ["budget_usd"], ["spent_usd"], ["resets_at"]
	ReasonContentBlocked         = "CONTENT_BLOCKED"        // Metadata["rule"], ["stage"]: a guardrails deny rule matched
	ReasonOutputSchemaMismatch   = "OUTPUT_SCHEMA_MISMATCH" // Metadata["schema_path"], ["instance_path"]
	ReasonTooManyStreams         = "TOO_MANY_STREAMS"       // Metadata["key"], ["limit"]: the key's open GenerateStreams
	ReasonSlowReader             = "SLOW_READER"            // Metadata["timeout_s"]: the client read nothing that long
)

// FieldViolation is one wrong request field (a path such as
// "params.max_tokens") and what is wrong with it: a google.rpc.BadRequest entry.
type FieldViolation struct {
	Field       string
	Description string
}

// Attempt is how one model of a fallback chain failed (ReasonAllModelsFailed).
type Attempt struct {
	ModelID string `json:"model_id"`
	Code    string `json:"code"`   // the gRPC code's name: "UNAVAILABLE"
	Reason  string `json:"reason"` // the error's reason: "BACKEND_UNAVAILABLE"
	Message string `json:"message"`
}

// Error is a failed call as the gRPC richer error model describes it: the
// status code and message plus what the google.rpc details carried.
// status.Code and status.FromError work on it as on any gRPC error.
type Error struct {
	Code    codes.Code
	Message string
	// From google.rpc.ErrorInfo; Reason and Domain are empty when the status
	// carried none (another server, or the transport itself).
	Reason   string
	Domain   string
	Metadata map[string]string
	// From google.rpc.RetryInfo; 0 when the server gave no retry delay.
	RetryDelay time.Duration
	// From google.rpc.BadRequest.
	FieldViolations []FieldViolation

	status *status.Status
}

// FromStatus reads st's ErrorInfo (the first one of Domain, else the first
// of any domain), RetryInfo and BadRequest details.
func FromStatus(st *status.Status) *Error {
	e := &Error{Code: st.Code(), Message: st.Message(), Metadata: map[string]string{}, status: st}
	var info *errdetails.ErrorInfo
	for _, detail := range st.Details() {
		switch d := detail.(type) {
		case *errdetails.ErrorInfo:
			if info == nil || (info.GetDomain() != Domain && d.GetDomain() == Domain) {
				info = d
			}
		case *errdetails.RetryInfo:
			e.RetryDelay = d.GetRetryDelay().AsDuration()
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				e.FieldViolations = append(e.FieldViolations, FieldViolation{v.GetField(), v.GetDescription()})
			}
		}
	}
	if info != nil {
		e.Reason, e.Domain = info.GetReason(), info.GetDomain()
		for k, v := range info.GetMetadata() {
			e.Metadata[k] = v
		}
	}
	return e
}

// AsError is the *Error behind err: err itself, one it wraps, or one read
// from the gRPC status it carries. ok is false for an error without a status.
func AsError(err error) (e *Error, ok bool) {
	if errors.As(err, &e) {
		return e, true
	}
	st, ok := status.FromError(err)
	if !ok || err == nil {
		return nil, false
	}
	return FromStatus(st), true
}

// callError turns a failed call's status error into an *Error; other errors
// (a callback's own) pass through unchanged.
func callError(err error) error {
	if st, ok := status.FromError(err); ok && err != nil {
		return FromStatus(st)
	}
	return err
}

func (e *Error) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("modelyard: %s (%s)", e.Message, e.Code)
	}
	return fmt.Sprintf("modelyard: %s (%s, %s)", e.Message, e.Code, e.Reason)
}

// GRPCStatus is the status the error was read from (status.FromError uses it).
func (e *Error) GRPCStatus() *status.Status { return e.status }

// FromModelyard says whether a modelyard service described this error
// (its ErrorInfo has Domain), as opposed to another server or the transport.
func (e *Error) FromModelyard() bool { return e.Domain == Domain }

// Attempts are the failed models of a ReasonAllModelsFailed error, in the
// order tried (ErrorInfo metadata "attempts", a JSON list); nil for others.
func (e *Error) Attempts() ([]Attempt, error) {
	text, ok := e.Metadata["attempts"]
	if !ok {
		return nil, nil
	}
	var attempts []Attempt
	if err := json.Unmarshal([]byte(text), &attempts); err != nil {
		return nil, fmt.Errorf("modelyard: attempts metadata: %w", err)
	}
	return attempts, nil
}
