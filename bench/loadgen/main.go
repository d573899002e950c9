// Command loadgen drives the modelyard gateway (GatewayService.GenerateStream
// or Generate) or an OpenAI-compatible server with N calls in flight, checks
// every answer, and prints one JSON report: counts, wall time, latency
// percentiles and its own CPU time. It is the compiled load generator of
// bench/gateway_overhead.py (--loadgen go): unlike grpc.aio it costs little CPU
// per call, so on a small machine it leaves the cores to what is measured.
//
//	go build -o bin/loadgen . && bin/loadgen -addr 127.0.0.1:50051 -model custom/fake-gpt \
//	    -call stream -in-flight 32 -requests 5000 -expect-text "Hello from the fake upstream." -expect-finish stop
//
// With -hold it warms up, prints {"event":"warm"} and waits for a line on
// stdin before the measured run, so a driver can read other processes' CPU
// counters around exactly that run.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

type config struct {
	addr, call, model, prompt  string
	maxTokens                  int
	inFlight, requests, warmup int
	conns                      int
	timeout                    time.Duration
	expectText, expectFinish   string
	checkText                  bool
	hold, latencies            bool
	apiKey                     string
	varyPrompt                 bool
}

// report is the JSON printed at the end; latency figures are of successful calls.
type report struct {
	Call        string    `json:"call"`
	InFlight    int       `json:"in_flight"`
	Requests    int       `json:"requests"`
	Count       int       `json:"count"`
	Errors      int       `json:"errors"`
	FirstError  string    `json:"first_error"`
	WallS       float64   `json:"wall_s"`
	RPS         float64   `json:"rps"`
	P50Ms       float64   `json:"p50_ms"`
	P99Ms       float64   `json:"p99_ms"`
	CPUS        float64   `json:"cpu_s"`
	CPUMsPerReq float64   `json:"cpu_ms_per_req"`
	Conns       int       `json:"conns"`
	LatenciesMs []float64 `json:"latencies_ms,omitempty"`
}

func parseFlags() config {
	var c config
	flag.StringVar(&c.addr, "addr", "127.0.0.1:50051", "gateway host:port, or the base URL (http://host:port) for -call openai-stream and openai")
	flag.StringVar(&c.call, "call", "stream", "stream (GenerateStream), unary (Generate), openai-stream (POST /v1/chat/completions, SSE) or openai (the same, one JSON answer)")
	flag.StringVar(&c.apiKey, "api-key", "", "sent as x-api-key (gRPC) or Authorization: Bearer (HTTP)")
	flag.BoolVar(&c.varyPrompt, "vary-prompt", false, "number each call's prompt, so no two are alike (a response cache misses)")
	flag.StringVar(&c.model, "model", "", "model id (catalog id or alias; the upstream's model name for openai-stream)")
	flag.StringVar(&c.prompt, "prompt", "Say hello.", "the user message")
	flag.IntVar(&c.maxTokens, "max-tokens", 16, "max_tokens of every request (0: unset)")
	flag.IntVar(&c.inFlight, "in-flight", 1, "calls outstanding at a time")
	flag.IntVar(&c.requests, "requests", 1000, "measured calls")
	flag.IntVar(&c.warmup, "warmup", 0, "calls before the measured run, at the same concurrency")
	flag.IntVar(&c.conns, "conns", 1, "gRPC connections (each one HTTP/2 connection) the load is spread over")
	flag.DurationVar(&c.timeout, "timeout", 30*time.Second, "deadline of each call")
	flag.StringVar(&c.expectText, "expect-text", "", "the whole answer text every call must return (checked only when given)")
	flag.StringVar(&c.expectFinish, "expect-finish", "stop", "finish reason every call must end with (stop, length, ...; empty: not checked)")
	flag.BoolVar(&c.hold, "hold", false, `after warm-up print {"event":"warm"} and wait for a stdin line`)
	flag.BoolVar(&c.latencies, "latencies", false, "include every successful call's latency (ms) in the report")
	flag.Parse()
	flag.Visit(func(f *flag.Flag) { c.checkText = c.checkText || f.Name == "expect-text" })
	if c.model == "" || c.inFlight < 1 || c.requests < 1 || c.conns < 1 {
		fmt.Fprintln(os.Stderr, "loadgen: -model is required; -in-flight, -requests and -conns must be >= 1")
		os.Exit(2)
	}
	return c
}

// tally is the outcome of one run.
type tally struct {
	latenciesMs []float64
	errors      int
	firstError  string
	wall        time.Duration
}

// drive makes n calls with inFlight of them outstanding at a time.
func drive(cfg config, do call, n, inFlight int) tally {
	var (
		next  atomic.Int64
		mu    sync.Mutex
		total tally
		wg    sync.WaitGroup
	)
	started := time.Now()
	for range inFlight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine tally
			for next.Add(1) <= int64(n) {
				t0 := time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), cfg.timeout)
				ans, err := do(ctx)
				cancel()
				elapsed := time.Since(t0)
				if err == nil {
					err = check(cfg, ans)
				}
				if err != nil {
					mine.errors++
					if mine.firstError == "" {
						mine.firstError = err.Error()
					}
					continue
				}
				mine.latenciesMs = append(mine.latenciesMs, float64(elapsed.Nanoseconds())/1e6)
			}
			mu.Lock()
			total.latenciesMs = append(total.latenciesMs, mine.latenciesMs...)
			total.errors += mine.errors
			if total.firstError == "" {
				total.firstError = mine.firstError
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	total.wall = time.Since(started)
	return total
}

func check(cfg config, ans answer) error {
	if cfg.expectFinish != "" && ans.finish != cfg.expectFinish {
		return fmt.Errorf("wrong answer: finish reason %q, want %q", ans.finish, cfg.expectFinish)
	}
	if cfg.checkText && ans.text != cfg.expectText {
		return fmt.Errorf("wrong answer: text %q, want %q", ans.text, cfg.expectText)
	}
	return nil
}

// cpuSeconds is this process's user + system CPU time, all threads.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return math.NaN()
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

// percentile is the nearest-rank percentile of sorted values (as bench/overhead_report.py).
func percentile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	return sorted[max(0, int(math.Ceil(q/100*float64(len(sorted))))-1)]
}

// nanToZero keeps the report valid JSON (encoding/json rejects NaN).
func nanToZero(v float64) float64 {
	if math.IsNaN(v) {
		return 0
	}
	return v
}

func main() {
	cfg := parseFlags()
	var (
		do      call
		closeFn func()
		err     error
	)
	switch cfg.call {
	case "stream", "unary":
		do, closeFn, err = gatewayCall(cfg)
	case "openai-stream":
		do, closeFn, err = openaiStreamCall(cfg)
	case "openai":
		do, closeFn, err = openaiCall(cfg)
	default:
		err = fmt.Errorf("unknown -call %q", cfg.call)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
	defer closeFn()

	if cfg.warmup > 0 {
		if w := drive(cfg, do, cfg.warmup, cfg.inFlight); w.errors > 0 {
			fmt.Fprintf(os.Stderr, "loadgen: %d warm-up errors (first: %s)\n", w.errors, w.firstError)
		}
	}
	if cfg.hold {
		fmt.Println(`{"event":"warm"}`)
		if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
			fmt.Fprintln(os.Stderr, "loadgen: stdin closed before the go-ahead:", err)
			os.Exit(2)
		}
	}

	cpuBefore := cpuSeconds()
	t := drive(cfg, do, cfg.requests, cfg.inFlight)
	cpu := cpuSeconds() - cpuBefore

	sorted := slices.Clone(t.latenciesMs)
	slices.Sort(sorted)
	out := report{
		Call:        cfg.call,
		InFlight:    cfg.inFlight,
		Requests:    cfg.requests,
		Count:       len(t.latenciesMs),
		Errors:      t.errors,
		FirstError:  t.firstError,
		WallS:       t.wall.Seconds(),
		RPS:         float64(cfg.requests) / t.wall.Seconds(),
		P50Ms:       nanToZero(percentile(sorted, 50)),
		P99Ms:       nanToZero(percentile(sorted, 99)),
		CPUS:        cpu,
		CPUMsPerReq: cpu * 1000 / float64(cfg.requests),
		Conns:       cfg.conns,
	}
	if cfg.latencies {
		out.LatenciesMs = t.latenciesMs
	}
	enc := json.NewEncoder(os.Stdout)
	if err := enc.Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
	if t.errors > 0 {
		os.Exit(1)
	}
}
