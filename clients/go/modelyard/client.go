// Package modelyard is a small typed client for the modelyard gateway
// (modelyard.v1.GatewayService). The generated stubs live in
// modelyard.dev/clients/go/modelyard/v1; this package adds a connection helper,
// a chat-request builder and Generate / GenerateStream calls that return one
// Answer. A failed call returns an *Error: the status code and message with the
// google.rpc details modelyard sends (reason, metadata, retry delay, field
// violations, a fallback chain's attempts).
package modelyard

import (
	"context"
	"errors"
	"io"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	modelyardv1 "modelyard.dev/clients/go/modelyard/v1"
)

// Answer is a whole generation: the text of every chunk joined, plus what the
// gateway reports once (model, finish reason, usage).
type Answer struct {
	ModelID      string
	Text         string
	FinishReason modelyardv1.FinishReason
	Usage        *modelyardv1.Usage
}

// Client calls GatewayService over one gRPC connection (one HTTP/2 connection
// to the target once connected). It is safe for concurrent use.
type Client struct {
	conn    *grpc.ClientConn
	Gateway modelyardv1.GatewayServiceClient
}

// Dial makes a client for target ("host:port"). Without options it connects
// in plaintext; pass grpc.WithTransportCredentials(...) for TLS. The
// connection is made lazily, on the first call.
func Dial(target string, opts ...grpc.DialOption) (*Client, error) {
	if len(opts) == 0 {
		opts = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	conn, err := grpc.NewClient(target, opts...)
	if err != nil {
		return nil, err
	}
	return &Client{conn: conn, Gateway: modelyardv1.NewGatewayServiceClient(conn)}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// ChatRequest is a GenerateRequest for one user message to model (a catalog id
// or an alias). maxTokens <= 0 leaves the limit to the model.
func ChatRequest(model, prompt string, maxTokens int32) *modelyardv1.GenerateRequest {
	req := &modelyardv1.GenerateRequest{
		Model: model,
		Input: &modelyardv1.Input{Kind: &modelyardv1.Input_Chat{Chat: &modelyardv1.ChatMessages{
			Messages: []*modelyardv1.ChatMessage{{Role: "user", Content: prompt}},
		}}},
	}
	if maxTokens > 0 {
		req.Params = &modelyardv1.GenerationParams{MaxTokens: maxTokens}
	}
	return req
}

// Generate makes one unary call. A failed call returns an *Error.
func (c *Client) Generate(ctx context.Context, req *modelyardv1.GenerateRequest) (Answer, error) {
	resp, err := c.Gateway.Generate(ctx, req)
	if err != nil {
		return Answer{}, callError(err)
	}
	return Answer{
		ModelID:      resp.GetModelId(),
		Text:         resp.GetText(),
		FinishReason: resp.GetFinishReason(),
		Usage:        resp.GetUsage(),
	}, nil
}

// GenerateStream makes one streaming call and reads it to the end. onChunk,
// if not nil, sees every chunk as it arrives; an error from it cancels the
// call and is returned as it is; a failed call returns an *Error.
func (c *Client) GenerateStream(
	ctx context.Context, req *modelyardv1.GenerateRequest, onChunk func(*modelyardv1.GenerateChunk) error,
) (Answer, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the stream if we stop reading early
	stream, err := c.Gateway.GenerateStream(ctx, req)
	if err != nil {
		return Answer{}, callError(err)
	}
	var (
		ans  Answer
		text strings.Builder
	)
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return Answer{}, callError(err)
		}
		if onChunk != nil {
			if err := onChunk(chunk); err != nil {
				return Answer{}, err
			}
		}
		text.WriteString(chunk.GetText())
		if id := chunk.GetModelId(); id != "" && ans.ModelID == "" {
			ans.ModelID = id
		}
		if fr := chunk.GetFinishReason(); fr != modelyardv1.FinishReason_FINISH_REASON_UNSPECIFIED {
			ans.FinishReason = fr
		}
		if u := chunk.GetUsage(); u != nil {
			ans.Usage = u
		}
	}
	ans.Text = text.String()
	return ans, nil
}
