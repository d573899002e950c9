package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"

	"google.golang.org/grpc/metadata"

	"modelyard.dev/clients/go/modelyard"
	modelyardv1 "modelyard.dev/clients/go/modelyard/v1"
)

// answer is what a call got back, in a form every call kind can fill.
type answer struct {
	text   string
	finish string // lower-case, OpenAI style: "stop", "length", ...
}

// call makes one request and returns its answer; an error is a failed call.
type call func(ctx context.Context) (answer, error)

// finishName maps FINISH_REASON_STOP to "stop", so gRPC and HTTP answers
// compare against the same -expect-finish.
func finishName(fr modelyardv1.FinishReason) string {
	if fr == modelyardv1.FinishReason_FINISH_REASON_UNSPECIFIED {
		return ""
	}
	return strings.ToLower(strings.TrimPrefix(fr.String(), "FINISH_REASON_"))
}

// gatewayCall spreads calls round-robin over conns gRPC connections.
func gatewayCall(cfg config) (call, func(), error) {
	clients := make([]*modelyard.Client, cfg.conns)
	for i := range clients {
		c, err := modelyard.Dial(cfg.addr)
		if err != nil {
			return nil, nil, err
		}
		clients[i] = c
	}
	closeAll := func() {
		for _, c := range clients {
			_ = c.Close()
		}
	}
	fixed := modelyard.ChatRequest(cfg.model, cfg.prompt, int32(cfg.maxTokens))
	var turn, sent atomic.Uint64
	pick := func() *modelyard.Client { return clients[turn.Add(1)%uint64(len(clients))] }
	prepare := func(ctx context.Context) (context.Context, *modelyardv1.GenerateRequest) {
		if cfg.apiKey != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "x-api-key", cfg.apiKey)
		}
		if !cfg.varyPrompt {
			return ctx, fixed
		}
		return ctx, modelyard.ChatRequest(cfg.model, numbered(cfg.prompt, &sent), int32(cfg.maxTokens))
	}

	if cfg.call == "unary" {
		return func(ctx context.Context) (answer, error) {
			ctx, req := prepare(ctx)
			ans, err := pick().Generate(ctx, req)
			return answer{ans.Text, finishName(ans.FinishReason)}, err
		}, closeAll, nil
	}
	return func(ctx context.Context) (answer, error) {
		ctx, req := prepare(ctx)
		ans, err := pick().GenerateStream(ctx, req, nil)
		return answer{ans.Text, finishName(ans.FinishReason)}, err
	}, closeAll, nil
}

// numbered is the prompt with the call's number after it, so no two calls are alike
// (a response cache then looks each one up and misses).
func numbered(prompt string, sent *atomic.Uint64) string {
	return prompt + " #" + strconv.FormatUint(sent.Add(1), 10)
}

// chatBody is a chat completion request's JSON; each call's own with -vary-prompt.
func chatBody(cfg config, stream bool, sent *atomic.Uint64) ([]byte, error) {
	prompt := cfg.prompt
	if cfg.varyPrompt {
		prompt = numbered(prompt, sent)
	}
	body := map[string]any{
		"model":      cfg.model,
		"messages":   []map[string]string{{"role": "user", "content": prompt}},
		"max_tokens": cfg.maxTokens,
	}
	if stream {
		body["stream"] = true
		body["stream_options"] = map[string]bool{"include_usage": true}
	}
	return json.Marshal(body)
}

// completion is the part of an OpenAI chat.completion the check needs.
type completion struct {
	Choices []struct {
		Message struct {
			Content string `json:"content"`
		} `json:"message"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
}

// httpClient is one keep-alive pool for the run, and how each request is made.
func httpClient(cfg config) (*http.Client, *http.Transport, string) {
	transport := &http.Transport{
		MaxIdleConnsPerHost: cfg.inFlight + cfg.conns,
		DisableCompression:  true,
	}
	return &http.Client{Transport: transport}, transport, strings.TrimSuffix(cfg.addr, "/") + "/v1/chat/completions"
}

// post sends one chat completion request: the call's own body with -vary-prompt, else `fixed`.
func post(ctx context.Context, cfg config, client *http.Client, url string, fixed []byte, stream bool, sent *atomic.Uint64) (*http.Response, error) {
	body := fixed
	if cfg.varyPrompt {
		var err error
		if body, err = chatBody(cfg, stream, sent); err != nil {
			return nil, err
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if cfg.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+cfg.apiKey)
	}
	return client.Do(req)
}

// openaiCall is a chat completion without streaming: one JSON answer.
func openaiCall(cfg config) (call, func(), error) {
	client, transport, url := httpClient(cfg)
	var sent atomic.Uint64
	fixed, err := chatBody(cfg, false, &sent)
	if err != nil {
		return nil, nil, err
	}
	return func(ctx context.Context) (answer, error) {
		resp, err := post(ctx, cfg, client, url, fixed, false, &sent)
		if err != nil {
			return answer{}, err
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		if err != nil {
			return answer{}, err
		}
		if resp.StatusCode != http.StatusOK {
			return answer{}, fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		var done completion
		if err := json.Unmarshal(data, &done); err != nil {
			return answer{}, err
		}
		if len(done.Choices) == 0 {
			return answer{}, fmt.Errorf("no choices in the answer")
		}
		return answer{done.Choices[0].Message.Content, done.Choices[0].FinishReason}, nil
	}, transport.CloseIdleConnections, nil
}

// sseEvent is the part of an OpenAI chat.completion.chunk the check needs.
type sseEvent struct {
	Choices []struct {
		Delta struct {
			Content string `json:"content"`
		} `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
}

// openaiStreamCall is a streaming chat completion straight to an
// OpenAI-compatible server (the benchmark's "direct" baseline), reading and
// JSON-decoding every SSE event as a real client would.
func openaiStreamCall(cfg config) (call, func(), error) {
	client, transport, url := httpClient(cfg)
	dataPrefix, done := []byte("data: "), []byte("[DONE]")
	var sent atomic.Uint64
	fixed, err := chatBody(cfg, true, &sent)
	if err != nil {
		return nil, nil, err
	}

	return func(ctx context.Context) (answer, error) {
		resp, err := post(ctx, cfg, client, url, fixed, true, &sent)
		if err != nil {
			return answer{}, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			_, _ = io.Copy(io.Discard, resp.Body)
			return answer{}, fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		var (
			ans    answer
			text   strings.Builder
			sawEnd bool
		)
		lines := bufio.NewScanner(resp.Body)
		for lines.Scan() {
			data, ok := bytes.CutPrefix(lines.Bytes(), dataPrefix)
			if !ok {
				continue
			}
			if bytes.Equal(bytes.TrimSpace(data), done) {
				sawEnd = true
				break
			}
			var ev sseEvent
			if err := json.Unmarshal(data, &ev); err != nil {
				return answer{}, err
			}
			for _, ch := range ev.Choices {
				text.WriteString(ch.Delta.Content)
				if ch.FinishReason != nil && *ch.FinishReason != "" {
					ans.finish = *ch.FinishReason
				}
			}
		}
		if err := lines.Err(); err != nil {
			return answer{}, err
		}
		// Drain so the keep-alive connection goes back to the pool.
		_, _ = io.Copy(io.Discard, resp.Body)
		if !sawEnd {
			return answer{}, fmt.Errorf("stream ended without data: [DONE]")
		}
		ans.text = text.String()
		return ans, nil
	}, transport.CloseIdleConnections, nil
}
