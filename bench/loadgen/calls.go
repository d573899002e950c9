package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"

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
	req := modelyard.ChatRequest(cfg.model, cfg.prompt, int32(cfg.maxTokens))
	var turn atomic.Uint64
	pick := func() *modelyard.Client { return clients[turn.Add(1)%uint64(len(clients))] }

	if cfg.call == "unary" {
		return func(ctx context.Context) (answer, error) {
			ans, err := pick().Generate(ctx, req)
			return answer{ans.Text, finishName(ans.FinishReason)}, err
		}, closeAll, nil
	}
	return func(ctx context.Context) (answer, error) {
		ans, err := pick().GenerateStream(ctx, req, nil)
		return answer{ans.Text, finishName(ans.FinishReason)}, err
	}, closeAll, nil
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
	body, err := json.Marshal(map[string]any{
		"model":          cfg.model,
		"messages":       []map[string]string{{"role": "user", "content": cfg.prompt}},
		"stream":         true,
		"stream_options": map[string]bool{"include_usage": true},
		"max_tokens":     cfg.maxTokens,
	})
	if err != nil {
		return nil, nil, err
	}
	url := strings.TrimSuffix(cfg.addr, "/") + "/v1/chat/completions"
	transport := &http.Transport{
		MaxIdleConnsPerHost: cfg.inFlight + cfg.conns,
		DisableCompression:  true,
	}
	client := &http.Client{Transport: transport}
	dataPrefix, done := []byte("data: "), []byte("[DONE]")

	return func(ctx context.Context) (answer, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return answer{}, err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
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
