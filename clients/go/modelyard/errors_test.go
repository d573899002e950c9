package modelyard

import (
	"context"
	"errors"
	"net"
	"reflect"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	modelyardv1 "modelyard.dev/clients/go/modelyard/v1"
)

func withDetails(t *testing.T, code codes.Code, msg string, details ...protoadapt.MessageV1) *status.Status {
	t.Helper()
	st, err := status.New(code, msg).WithDetails(details...)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestFromStatusReadsErrorInfoRetryInfoAndBadRequest(t *testing.T) {
	st := withDetails(t, codes.ResourceExhausted, "slow down; retry after 7.250s",
		&errdetails.ErrorInfo{Reason: ReasonRateLimited, Domain: Domain, Metadata: map[string]string{"k": "v"}},
		&errdetails.RetryInfo{RetryDelay: durationpb.New(7250 * time.Millisecond)},
		&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
			{Field: "params.max_tokens", Description: "must be >= 0"},
		}},
	)
	got := FromStatus(st)
	want := &Error{
		Code:            codes.ResourceExhausted,
		Message:         "slow down; retry after 7.250s",
		Reason:          ReasonRateLimited,
		Domain:          Domain,
		Metadata:        map[string]string{"k": "v"},
		RetryDelay:      7250 * time.Millisecond,
		FieldViolations: []FieldViolation{{"params.max_tokens", "must be >= 0"}},
		status:          st,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("FromStatus = %+v, want %+v", got, want)
	}
}

func TestModelyardErrorInfoWinsOverAnotherDomain(t *testing.T) {
	st := withDetails(t, codes.NotFound, "model 'a/b' is not in the catalog",
		&errdetails.ErrorInfo{Reason: "NOT_HERE", Domain: "example.com"},
		&errdetails.ErrorInfo{Reason: ReasonModelNotFound, Domain: Domain, Metadata: map[string]string{"model_id": "a/b"}},
	)
	got := FromStatus(st)
	if got.Reason != ReasonModelNotFound || got.Metadata["model_id"] != "a/b" || !got.FromModelyard() {
		t.Fatalf("FromStatus = %+v, want the modelyard ErrorInfo", got)
	}
}

func TestAStatusWithoutDetailsKeepsCodeAndMessageOnly(t *testing.T) {
	got := FromStatus(status.New(codes.Unavailable, "connection refused"))
	if got.Code != codes.Unavailable || got.Message != "connection refused" || got.Reason != "" ||
		got.FromModelyard() || got.RetryDelay != 0 || got.FieldViolations != nil || len(got.Metadata) != 0 {
		t.Fatalf("FromStatus = %+v, want code and message only", got)
	}
}

func TestAttemptsDecodeTheAllModelsFailedList(t *testing.T) {
	e := &Error{Reason: ReasonAllModelsFailed, Metadata: map[string]string{"attempts": `[` +
		`{"model_id": "a/one", "code": "UNAVAILABLE", "reason": "BACKEND_UNAVAILABLE", "message": "down"},` +
		`{"model_id": "b/two", "code": "NOT_FOUND", "reason": "MODEL_NOT_FOUND", "message": "gone"}]`}}
	got, err := e.Attempts()
	if err != nil {
		t.Fatal(err)
	}
	want := []Attempt{
		{ModelID: "a/one", Code: "UNAVAILABLE", Reason: "BACKEND_UNAVAILABLE", Message: "down"},
		{ModelID: "b/two", Code: "NOT_FOUND", Reason: "MODEL_NOT_FOUND", Message: "gone"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Attempts = %+v, want %+v", got, want)
	}
}

// failingGateway answers every call with the status it holds (a stream
// sends one chunk first when chunkFirst is set).
type failingGateway struct {
	modelyardv1.UnimplementedGatewayServiceServer
	st         *status.Status
	chunkFirst bool
}

func (g failingGateway) Generate(context.Context, *modelyardv1.GenerateRequest) (*modelyardv1.GenerateResponse, error) {
	return nil, g.st.Err()
}

func (g failingGateway) GenerateStream(_ *modelyardv1.GenerateRequest, out modelyardv1.GatewayService_GenerateStreamServer) error {
	if g.chunkFirst {
		if err := out.Send(&modelyardv1.GenerateChunk{Text: "partial"}); err != nil {
			return err
		}
	}
	return g.st.Err()
}

// dialFailing serves g in process (bufconn) and returns a Client of it.
func dialFailing(t *testing.T, g failingGateway) *Client {
	t.Helper()
	listener := bufconn.Listen(1 << 20)
	server := grpc.NewServer()
	modelyardv1.RegisterGatewayServiceServer(server, g)
	go func() { _ = server.Serve(listener) }()
	t.Cleanup(server.Stop)
	c, err := Dial("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return listener.DialContext(ctx)
		}),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestClientCallsReturnATypedErrorWithTheDetails(t *testing.T) {
	st := withDetails(t, codes.Unavailable, "every model failed: a/one: down",
		&errdetails.ErrorInfo{Reason: ReasonAllModelsFailed, Domain: Domain, Metadata: map[string]string{
			"attempts": `[{"model_id": "a/one", "code": "UNAVAILABLE", "reason": "BACKEND_UNAVAILABLE", "message": "down"}]`,
		}})
	c := dialFailing(t, failingGateway{st: st})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := ChatRequest("a/one", "hi", 8)
	_, unaryErr := c.Generate(ctx, req)
	_, streamErr := c.GenerateStream(ctx, req, nil)
	for name, err := range map[string]error{"Generate": unaryErr, "GenerateStream": streamErr} {
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("%s: %T %v, want *Error", name, err, err)
		}
		if status.Code(err) != codes.Unavailable || e.Reason != ReasonAllModelsFailed || e.Message != st.Message() {
			t.Fatalf("%s: %+v", name, e)
		}
		attempts, aerr := e.Attempts()
		want := []Attempt{{ModelID: "a/one", Code: "UNAVAILABLE", Reason: "BACKEND_UNAVAILABLE", Message: "down"}}
		if aerr != nil || !reflect.DeepEqual(attempts, want) {
			t.Fatalf("%s: attempts %+v (%v), want %+v", name, attempts, aerr, want)
		}
	}
}

func TestACallbackErrorIsReturnedAsItIs(t *testing.T) {
	c := dialFailing(t, failingGateway{st: status.New(codes.Internal, "after the chunk"), chunkFirst: true})
	mine := errors.New("stop here")
	_, err := c.GenerateStream(context.Background(), ChatRequest("m", "hi", 8),
		func(*modelyardv1.GenerateChunk) error { return mine })
	if err != mine {
		t.Fatalf("GenerateStream = %v, want the callback's own error", err)
	}
	if _, ok := AsError(mine); ok {
		t.Fatal("AsError found a status in a plain error")
	}
}
