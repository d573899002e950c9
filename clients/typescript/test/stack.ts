/**
 * A real modelyard stack for the tests, started as bench/gateway_overhead.py
 * starts its own: the fake OpenAI-compatible upstream
 * (bench/fake_openai_upstream.py) in one child process and
 * `python -m modelyard.cli serve gateway registry backend-openai-compat` in
 * another, its backend pointed at the upstream by CUSTOM_AI_PROVIDER_URL,
 * everything on 127.0.0.1 ports the OS picks (port 0), the data directory a
 * fresh temporary one, the HTTP edge off. `stop` ends both by their pids.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { openSync, closeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";

/** The checkout: this file runs from clients/typescript/dist/test/. */
export const ROOT = resolve(__dirname, "..", "..", "..", "..");
const PYTHON = process.env["PYTHON"] ?? join(ROOT, ".venv", "bin", "python");
/** The model the fake upstream serves and the text of its every answer (PIECES joined). */
export const UPSTREAM_MODEL = "fake-gpt";
export const UPSTREAM_TEXT = "Hello from the fake upstream.";
const PROVIDER_KEYS = ["OPENAI_API_KEY", "MISTRAL_API_KEY", "OPENROUTER_API_KEY"];
const STARTUP_MS = 60_000;

/** Resolves with the first stdout line `match` finds something in; rejects at exit or timeout. */
function waitForLine(child: ChildProcess, what: string, match: RegExp, log: () => string): Promise<RegExpMatchArray> {
  return new Promise((resolvePromise, reject) => {
    const lines = createInterface({ input: child.stdout! });
    const timer = setTimeout(() => fail(`no ${what} in ${STARTUP_MS} ms`), STARTUP_MS);
    const onExit = (code: number | null): void => fail(`exited (${code}) before ${what}`);
    function fail(why: string): void {
      clearTimeout(timer);
      child.off("exit", onExit);
      reject(new Error(`${why}; its log ends:\n${log().slice(-3000)}`));
    }
    child.once("exit", onExit);
    lines.on("line", (line) => {
      const found = line.match(match);
      if (found) {
        clearTimeout(timer);
        child.off("exit", onExit);
        resolvePromise(found);
      }
    });
  });
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) {
    return;
  }
  const exited = new Promise<void>((done) => child.once("exit", () => done()));
  process.kill(child.pid, "SIGTERM"); // by its own pid
  const killer = setTimeout(() => child.pid !== undefined && process.kill(child.pid, "SIGKILL"), 10_000);
  await exited;
  clearTimeout(killer);
}

export class Stack {
  private constructor(
    /** "127.0.0.1:PORT" of the gateway (and registry, on the same server). */
    readonly address: string,
    /** The catalog id the stack serves the upstream's model as: "custom/fake-gpt". */
    readonly modelId: string,
    private readonly upstream: ChildProcess,
    private readonly gateway: ChildProcess,
    private readonly dataDir: string,
  ) {}

  static async start(): Promise<Stack> {
    const dataDir = mkdtempSync(join(tmpdir(), "modelyard-ts-"));
    const upstream = spawn(PYTHON, [join(ROOT, "bench", "fake_openai_upstream.py"), "--port", "0"], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    let gateway: ChildProcess | undefined;
    try {
      const [, upstreamAddress] = await waitForLine(upstream, "listening line", /^listening on (\S+)/, () => "");
      const env: NodeJS.ProcessEnv = { ...process.env };
      for (const key of PROVIDER_KEYS) {
        delete env[key];
      }
      Object.assign(env, {
        CUSTOM_AI_PROVIDER_URL: `http://${upstreamAddress}`,
        MODELYARD_HTTP_ADDRESS: "off",
        MODELYARD_DATA_DIR: dataDir,
        OTEL_TRACES_EXPORTER: "none",
        PYTHONPATH: [join(ROOT, "services"), join(ROOT, "clients", "python"), env["PYTHONPATH"] ?? ""].join(":"),
      });
      const logPath = join(dataDir, "gateway.log");
      const logFd = openSync(logPath, "w");
      gateway = spawn(
        PYTHON,
        ["-m", "modelyard.cli", "serve", "gateway", "registry", "backend-openai-compat",
          "--listen", "127.0.0.1:0", "--grace", "1"],
        { cwd: ROOT, env, stdio: ["ignore", "pipe", logFd] },
      );
      closeSync(logFd);
      const log = (): string => readFileSync(logPath, "utf8");
      const serving = waitForLine(gateway, "serving line", / on (127\.0\.0\.1:\d+)$/, log);
      const model = waitForLine(gateway, `model custom/${UPSTREAM_MODEL}`, new RegExp(`model (\\S+/${UPSTREAM_MODEL})$`), log);
      const [[, address], [, modelId]] = await Promise.all([serving, model]);
      gateway.stdout!.resume(); // read to the end so the child never blocks on a pipe
      return new Stack(address!, modelId!, upstream, gateway, dataDir);
    } catch (err) {
      await Promise.all([gateway && stopChild(gateway), stopChild(upstream)]);
      rmSync(dataDir, { recursive: true, force: true });
      throw err;
    }
  }

  async stop(): Promise<void> {
    await stopChild(this.gateway);
    await stopChild(this.upstream);
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}
