#!/usr/bin/env node
// Tandem sandbox toolbox: runs INSIDE the sandbox container (Node 22+), as its main process. It holds the SDK's
// agent toolset (one persistent bash shell) and answers the hands host over the toolbox channel:
//
//   node /opt/tandem/toolbox.mjs serve   the daemon. It listens on nothing: it dials every channel socket
//                                        (ch-*.sock) the host puts in TANDEM_HOST_DIR, a read-only bind mount of a
//                                        host directory, so no socket the sandbox user could replace carries tool
//                                        calls. Each hands process on the host has its own socket there; the
//                                        daemon notices new ones (inotify, and a rescan every 2 s) and dials them.
//   node /opt/tandem/toolbox.mjs check   imports the toolset and prints versions (image smoke test)
//
// Channel: frames of sandbox/frames.mjs. The daemon first sends {op: 'hello', v, host}, host being the container's
// hostname (its short id); then the host sends requests {rid, op, ...} and the daemon answers {rid, ...}:
//   ping                       {ok: true}
//   call {call: {id, name, input}}
//                              {result: {content, is_error, truncated, output_path?}}; a repeated call id joins
//                              the running call or replays its result, so a retried activity never runs a tool twice
//   cancel {id}                {status: 'cancelled' | 'not-found'}
//   run {argv, stdin?, timeout_ms?}
//                              runs a program as the sandbox user with the shell's environment (clones at
//                              provision): {exit, stdout, stderr}, each output keeping its last 64 KiB
//   forward {ports: {port: socket name}}
//                              relays 127.0.0.1:<port> to <host dir>/<socket name> (the gateway's proxies), in this
//                              process, so a shell that kills every process it can does not end it
// An unknown op or a malformed request is answered {error}. Nothing here is trusted by the host: whatever the
// daemon answers is bounded and checked there, and a wrong answer gets the sandbox replaced.
//
// Environment of the daemon:
//   TANDEM_OUTPUT_CAP          max characters of a result's content (default 30000); longer output keeps head and
//                              tail and the full text goes to <run dir>/outputs/<id>.txt
//   TANDEM_SHELL_ENV_<NAME>    extra variable NAME for the bash shell (e.g. TANDEM_SHELL_ENV_HTTPS_PROXY)
//   TANDEM_RUN_DIR             outputs directory's parent (default /tmp/tandem)
//   TANDEM_HOST_DIR            where the host's channel sockets appear (default /run/tandem-host)
//   TANDEM_WORKDIR             working directory of the tools (default /workspace)
// Nothing else of the daemon's environment reaches the shell or the tools.

import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { encodeFrame, FrameDecoder } from './frames.mjs';
import { truncateFile, truncateOutput } from './truncate.mjs';

const RUN_DIR = process.env.TANDEM_RUN_DIR || '/tmp/tandem';
const HOST_DIR = process.env.TANDEM_HOST_DIR || '/run/tandem-host';
const OUTPUT_DIR = path.join(RUN_DIR, 'outputs');
const WORKDIR = process.env.TANDEM_WORKDIR || '/workspace';
const SESSION_DIR = '/mnt/session'; // uploads/ (the session's files, read-only) and outputs/ (published by the host)
const SKILLS_DIR = '/mnt/skills'; // the session's skills, read-only
const DEFAULT_OUTPUT_CAP = 30000;
const BASH_DEFAULT_TIMEOUT_MS = 120000;
const BASH_MAX_TIMEOUT_MS = 600000;
const MAX_OUTPUT_FILES = 100; // oldest full-output files beyond this are deleted (tmpfs is small)
const RESULT_CACHE_SIZE = 200; // finished results kept by id, so a retried call does not run twice
const PROTOCOL_VERSION = 1;
const CHANNEL_SOCKET = /^ch-[A-Za-z0-9_-]{1,64}\.sock$/;
// inotify on the host directory is the fast path; the rescan catches what it missed (and is all there is where
// the runtime does not pass host-side changes to inotify, as gVisor's does not): quick while no host has the line.
const RESCAN_MS = 2000;
const RESCAN_UNLINKED_MS = 100;
const MAX_REQUEST_BYTES = 64 * 1024 * 1024; // a request frame from the host (tool inputs are far smaller)
const RUN_OUTPUT_KEEP = 64 * 1024; // bytes of stdout and of stderr a `run` answer keeps (the last ones)
const RUN_DEFAULT_TIMEOUT_MS = 600000;

// ---------------------------------------------------------------------------------------------------------------
// daemon

async function serve() {
  const cap = parseCap(process.env.TANDEM_OUTPUT_CAP);
  const shellEnv = buildShellEnv(process.env);
  // Scrub the daemon's own environment too: the SDK's grep spawns rg with (a filtered copy of) process.env.
  for (const key of Object.keys(process.env)) if (!(key in shellEnv)) delete process.env[key];
  Object.assign(process.env, shellEnv);

  ensureHome(shellEnv.HOME);
  fs.mkdirSync(RUN_DIR, { recursive: true, mode: 0o700 });
  fs.chmodSync(RUN_DIR, 0o700);
  fs.mkdirSync(OUTPUT_DIR, { recursive: true, mode: 0o700 });

  const { betaAgentToolset20260401 } = await import('@anthropic-ai/sdk/tools/agent-toolset/node');
  // The file tools reach the workspace, /tmp, the session's files (uploads read-only, outputs to leave results) and
  // its skills (read-only).
  const roots = ['/tmp', RUN_DIR, SESSION_DIR, SKILLS_DIR];
  const toolset = betaAgentToolset20260401({ workdir: WORKDIR, allowedRoots: [...new Set(roots)], env: shellEnv });
  const tools = new Map(toolset.map((t) => [t.name, t]));

  /** id -> { promise, controller, name } for calls still running */
  const inflight = new Map();
  /** id -> result, for finished calls (insertion-ordered, bounded) */
  const finished = new Map();

  async function runCall(req) {
    const { id, name, input } = req;
    const started = Date.now();
    const controller = new AbortController();
    const promise = (async () => {
      const tool = tools.get(name);
      if (!tool) {
        return errorResult(`unknown tool "${name}"; the sandbox has: ${[...tools.keys()].join(', ')}`);
      }
      const problem = validateInput(tool.input_schema, input);
      if (problem) return errorResult(`invalid input for ${name}: ${problem}`);
      let args = input;
      let timeoutMs;
      // bash writes its whole output to a file, so a huge output keeps its head as well as its tail (the SDK's
      // shell alone keeps only the last 100 KiB); the braces run the command in the persistent shell itself.
      let outFile;
      if (name === 'bash') {
        timeoutMs = Math.min(input.timeout_ms ?? BASH_DEFAULT_TIMEOUT_MS, BASH_MAX_TIMEOUT_MS);
        args = { ...input, timeout_ms: timeoutMs };
        if (typeof input.command === 'string' && input.command.trim() !== '') {
          outFile = path.join(OUTPUT_DIR, `${safeFileName(id)}.txt`);
          args.command = `{ ${input.command}\n} > '${outFile}' 2>&1`;
        }
      }
      const toolUse = { type: 'tool_use', id, name, input };
      const aborted = new Promise((resolve) =>
        controller.signal.addEventListener('abort', () => resolve({ cancelled: true }), { once: true }),
      );
      const outcome = await Promise.race([
        runTool(tool, args, { toolUse, toolUseBlock: toolUse, signal: controller.signal }),
        aborted,
      ]);
      if (outcome.cancelled || controller.signal.aborted) {
        const reset = name === 'bash' ? ' The shell was restarted: working directory and variables were reset.' : '';
        return errorResult(`${name}: cancelled (interrupted before it finished).${reset}`);
      }
      let content = outcome.content;
      if (outcome.isError && name === 'bash') {
        const m = /timed out after (\d+)ms/.exec(content);
        if (content === 'bash: bash session terminated') {
          content =
            'bash: the shell exited before the command finished (it ran `exit`, or the shell was killed). ' +
            'The next call starts a fresh shell: working directory and variables are reset.';
        } else if (m) {
          const ms = Number(m[1]);
          content =
            `bash: the command timed out after ${ms} ms (${formatSeconds(ms)}) and was killed. ` +
            'The shell was restarted: working directory and variables were reset. ' +
            'Pass a larger timeout_ms (max 600000) or run long jobs in the background.';
        }
      }
      if (outFile) return withFileOutput(content, outcome.isError, outFile, cap);
      return { content, is_error: outcome.isError, truncated: false };
    })()
      .catch((e) => errorResult(`${name}: internal error: ${e instanceof Error ? e.message : String(e)}`))
      .then((result) => boundResult(id, result, cap));

    const entry = { promise, controller, name };
    inflight.set(id, entry);
    try {
      const result = await promise;
      if (!controller.signal.aborted) remember(finished, id, result);
      log(`${id} ${name} ${Date.now() - started}ms${result.is_error ? ' error' : ''}${result.truncated ? ' truncated' : ''}`);
      // A shell that was killed (timeout, cancel) may leave processes behind; when they fill the process table
      // (a fork bomb), nothing else could run. Once this answer is out, sweep them.
      if (name === 'bash' && result.is_error && /timed out|cancelled|shell exited/.test(result.content)) {
        setTimeout(sweepIfCrowded, 300);
      }
      return result;
    } finally {
      if (inflight.get(id) === entry) inflight.delete(id);
    }
  }

  /** Answers one request of the host. */
  async function handle(req) {
    switch (req?.op) {
      case 'ping':
        return { ok: true };
      case 'cancel': {
        const entry = inflight.get(req.id);
        if (!entry) return { status: 'not-found' };
        entry.controller.abort(new Error('cancelled'));
        log(`${req.id} ${entry.name} cancel requested`);
        return { status: 'cancelled' };
      }
      case 'call': {
        const call = req.call;
        if (call === null || typeof call !== 'object') return { error: '"call" must be an object' };
        if (typeof call.id !== 'string' || !call.id) return { error: 'call.id must be a non-empty string' };
        if (typeof call.name !== 'string') return { error: 'call.name must be a string' };
        // The same id again (a retried activity): join the running call or replay its result instead of
        // running the tool a second time.
        const running = inflight.get(call.id);
        if (running) return { result: await running.promise };
        const done = finished.get(call.id);
        if (done) return { result: done };
        return { result: await runCall(call) };
      }
      case 'run':
        return runProgram(req, shellEnv);
      case 'forward':
        return forward(req.ports);
      default:
        return { error: `unknown op ${JSON.stringify(req?.op)}` };
    }
  }

  const stop = () => {
    for (const t of toolset) t.close?.();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.on('uncaughtException', (e) => log(`uncaught: ${e?.stack ?? e}`));
  process.on('unhandledRejection', (e) => log(`unhandled rejection: ${e?.stack ?? e}`));

  dialHosts(handle);
  log(`ready (node ${process.version}, workdir ${WORKDIR}, output cap ${cap}); dialling the host in ${HOST_DIR}`);

  function boundResult(id, result, cap) {
    const { text, truncated } = truncateOutput(result.content, cap);
    if (!truncated) return result;
    const outputPath = path.join(OUTPUT_DIR, `${safeFileName(id)}.txt`);
    let saved = false;
    try {
      fs.writeFileSync(outputPath, result.content, { mode: 0o600 });
      saved = true;
      pruneOutputs();
    } catch (e) {
      log(`could not save full output of ${id}: ${e.message}`);
    }
    const bounded = saved ? truncateOutput(result.content, cap, { outputPath }) : { text };
    return {
      content: bounded.text,
      is_error: result.is_error,
      truncated: true,
      ...(saved ? { output_path: outputPath } : {}),
    };
  }
}

/** The process limit of this container's cgroup, if it has one. */
function pidsLimit() {
  for (const f of ['/sys/fs/cgroup/pids.max', '/sys/fs/cgroup/pids/pids.max']) {
    try {
      const v = Number(fs.readFileSync(f, 'utf8').trim());
      if (Number.isFinite(v) && v > 0) return v;
    } catch {}
  }
  return undefined;
}

/**
 * When more than half the process slots are taken, kills every process this user may signal except the toolbox
 * itself and PID 1: kill(-1) in the container's own PID namespace.
 */
function sweepIfCrowded() {
  const limit = pidsLimit();
  if (!limit) return;
  let count = 0;
  try {
    count = fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d)).length;
  } catch {
    return;
  }
  if (count < limit / 2) return;
  log(`${count} of ${limit} process slots taken after a killed shell: killing every process but the toolbox`);
  try {
    process.kill(-1, 'SIGKILL');
  } catch (e) {
    log(`sweep failed: ${e.message}`);
  }
}

/**
 * The result of a bash call whose output went to `outFile`: the (bounded) output, or the SDK's own message (exit
 * code, timeout) when there was none, or both. The file stays only when the output had to be cut.
 */
function withFileOutput(message, isError, outFile, cap) {
  let out = { text: '', truncated: false };
  try {
    out = truncateFile(outFile, cap - 400, fs);
  } catch {
    // no file: the command never ran (shell restart, cancellation before start)
  }
  if (!out.truncated) fs.rmSync(outFile, { force: true });
  else pruneOutputs();
  const output = out.text.replace(/\n+$/, '');
  // The SDK reports a failed command as its output, or "exit N" when it printed nothing (here: always).
  const sdkMessage = /^exit -?\d+$/.test(message) || message === '' ? '' : message;
  let content = output || message;
  if (sdkMessage && output) content = `${output}\n${sdkMessage}`;
  else if (isError && output && /^exit -?\d+$/.test(message)) content = `${output}\n[${message}]`;
  return { content, is_error: isError, truncated: out.truncated, ...(out.truncated ? { output_path: outFile } : {}) };
}

async function runTool(tool, input, context) {
  try {
    const content = await tool.run(tool.parse ? tool.parse(input) : input, context);
    return { content: contentToText(content), isError: false };
  } catch (e) {
    // The SDK's ToolError carries the model-visible content; anything else becomes its message.
    const content = e && typeof e === 'object' && 'content' in e ? e.content : e instanceof Error ? e.message : e;
    return { content: contentToText(content), isError: true };
  }
}

function contentToText(content) {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content
      .map((b) => (b?.type === 'text' ? b.text : `[${b?.type ?? 'unknown'} block omitted]`))
      .join('\n');
  }
  return String(content ?? '');
}

function errorResult(message) {
  return { content: message, is_error: true, truncated: false };
}

/** Checks `input` against the tool's JSON schema (object, required, property types). Returns a problem or null. */
function validateInput(schema, input) {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    return `input must be a JSON object, got ${describe(input)}`;
  }
  for (const key of schema.required ?? []) {
    if (input[key] === undefined) return `missing required field "${key}"`;
  }
  for (const [key, prop] of Object.entries(schema.properties ?? {})) {
    const value = input[key];
    if (value === undefined || value === null) continue;
    const problem = checkType(prop, value);
    if (problem) return `field "${key}" ${problem}`;
  }
  if ('timeout_ms' in (schema.properties ?? {}) && typeof input.timeout_ms === 'number' && input.timeout_ms <= 0) {
    return 'field "timeout_ms" must be a positive integer';
  }
  return null;
}

function checkType(prop, value) {
  switch (prop.type) {
    case 'string':
      return typeof value === 'string' ? null : `must be a string, got ${describe(value)}`;
    case 'boolean':
      return typeof value === 'boolean' ? null : `must be a boolean, got ${describe(value)}`;
    case 'integer':
      return Number.isInteger(value) ? null : `must be an integer, got ${describe(value)}`;
    case 'number':
      return typeof value === 'number' ? null : `must be a number, got ${describe(value)}`;
    case 'array': {
      if (!Array.isArray(value)) return `must be an array, got ${describe(value)}`;
      if (prop.items) {
        for (const [i, item] of value.entries()) {
          const p = checkType(prop.items, item);
          if (p) return `[${i}] ${p}`;
        }
      }
      return null;
    }
    default:
      return null;
  }
}

function describe(v) {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v)}`;
  return `${typeof v} ${JSON.stringify(v)}`;
}

function parseCap(raw) {
  const n = Number(raw);
  return raw && Number.isFinite(n) && n >= 100 ? Math.floor(n) : DEFAULT_OUTPUT_CAP;
}

/** The bash shell's whole environment: a fixed minimum plus explicit TANDEM_SHELL_ENV_<NAME> entries. */
function buildShellEnv(env) {
  const shellEnv = {
    PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    HOME: '/home/agent',
    LANG: 'C.UTF-8',
    TERM: 'dumb',
  };
  for (const [key, value] of Object.entries(env)) {
    const m = /^TANDEM_SHELL_ENV_([A-Za-z_][A-Za-z0-9_]*)$/.exec(key);
    if (m && value !== undefined) shellEnv[m[1]] = value;
  }
  return shellEnv;
}

/** /home/agent is a link into /tmp (the root is read-only); create its target so $HOME is writable. */
function ensureHome(home) {
  try {
    const target = fs.readlinkSync(home);
    fs.mkdirSync(path.resolve(path.dirname(home), target), { recursive: true, mode: 0o700 });
  } catch {}
}

function pruneOutputs() {
  const files = fs
    .readdirSync(OUTPUT_DIR)
    .map((f) => {
      const p = path.join(OUTPUT_DIR, f);
      try {
        return { p, t: fs.statSync(p).mtimeMs };
      } catch {
        return null;
      }
    })
    .filter(Boolean)
    .sort((a, b) => b.t - a.t);
  for (const { p } of files.slice(MAX_OUTPUT_FILES)) {
    try {
      fs.unlinkSync(p);
    } catch {}
  }
}

function safeFileName(id) {
  return id.replace(/[^A-Za-z0-9_.-]/g, '_').replace(/^\.+/, '_').slice(0, 200) || 'output';
}

function remember(map, key, value) {
  map.set(key, value);
  if (map.size > RESULT_CACHE_SIZE) map.delete(map.keys().next().value);
}

function formatSeconds(ms) {
  return `${(ms / 1000).toFixed(ms % 1000 === 0 ? 0 : 1)} s`;
}

function log(msg) {
  process.stderr.write(`toolbox: ${new Date().toISOString()} ${msg}\n`);
}

// ---------------------------------------------------------------------------------------------------------------
// the channel to the host

/**
 * Dials each channel socket in HOST_DIR once it appears, and again whenever a connection ends while its socket is
 * still there (a host process that restarted listens on a socket of a new name; a stale one refuses at once).
 */
function dialHosts(handle) {
  const links = new Map(); // socket path -> net.Socket
  let connected = 0;
  const dial = (file) => {
    const socketPath = path.join(HOST_DIR, file);
    if (links.has(socketPath)) return;
    const socket = net.createConnection(socketPath);
    links.set(socketPath, socket);
    const decoder = new FrameDecoder(MAX_REQUEST_BYTES);
    const send = (message) => {
      if (!socket.destroyed) socket.write(encodeFrame(message));
    };
    let up = false;
    socket.on('connect', () => {
      up = true;
      connected++;
      send({ op: 'hello', v: PROTOCOL_VERSION, host: os.hostname() });
    });
    socket.on('data', (chunk) => {
      let requests;
      try {
        requests = decoder.push(chunk);
      } catch (e) {
        log(`channel ${file}: ${e.message}; closing it`);
        return void socket.destroy();
      }
      for (const req of requests) {
        const rid = req?.rid;
        handle(req).then(
          (answer) => send({ rid, ...answer }),
          (e) => send({ rid, error: `daemon error: ${e?.message ?? e}` }),
        );
      }
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      links.delete(socketPath);
      if (up) connected--;
    });
  };
  const scan = () => {
    let files = [];
    try {
      files = fs.readdirSync(HOST_DIR);
    } catch {
      return;
    }
    for (const f of files) if (CHANNEL_SOCKET.test(f)) dial(f);
  };
  try {
    fs.watch(HOST_DIR, () => scan()).on('error', () => {});
  } catch (e) {
    log(`cannot watch ${HOST_DIR}: ${e.message}; rescanning instead`);
  }
  // The timer is also what keeps the daemon alive between connections.
  const rescan = () => {
    scan();
    setTimeout(rescan, connected > 0 ? RESCAN_MS : RESCAN_UNLINKED_MS);
  };
  rescan();
}

/** `run`: a program with the shell's environment, in the workspace; outputs keep their last RUN_OUTPUT_KEEP bytes. */
function runProgram(req, env) {
  const { argv, stdin, timeout_ms: timeoutMs } = req;
  if (!Array.isArray(argv) || argv.length === 0 || !argv.every((a) => typeof a === 'string'))
    return { error: '"argv" must be a non-empty array of strings' };
  return new Promise((resolve) => {
    const child = spawn(argv[0], argv.slice(1), { cwd: WORKDIR, env, stdio: ['pipe', 'pipe', 'pipe'] });
    const keep = (name) => {
      let buf = Buffer.alloc(0);
      child[name].on('data', (c) => {
        buf = Buffer.concat([buf, c]);
        if (buf.length > RUN_OUTPUT_KEEP) buf = buf.subarray(buf.length - RUN_OUTPUT_KEEP);
      });
      return () => buf.toString('utf8');
    };
    const stdout = keep('stdout');
    const stderr = keep('stderr');
    const timer = setTimeout(() => child.kill('SIGKILL'), Number(timeoutMs) > 0 ? Number(timeoutMs) : RUN_DEFAULT_TIMEOUT_MS);
    child.on('error', (e) => {
      clearTimeout(timer);
      resolve({ exit: 127, stdout: '', stderr: e.message });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ exit: code ?? 128, stdout: stdout(), stderr: stderr() + (signal ? `\nkilled by ${signal}` : '') });
    });
    child.stdin.on('error', () => {});
    child.stdin.end(typeof stdin === 'string' ? stdin : undefined);
  });
}

/** Ports this daemon relays to the host's sockets: port -> socket name. */
const forwarded = new Map();

/** `forward`: listens on 127.0.0.1:<port> for each entry and relays each connection to the host's socket. */
async function forward(ports) {
  if (ports === null || typeof ports !== 'object') return { error: '"ports" must be an object' };
  for (const [port, name] of Object.entries(ports)) {
    if (!/^\d+$/.test(port) || typeof name !== 'string' || !/^[a-z]+\.sock$/.test(name))
      return { error: `bad forward ${port} -> ${name}` };
    if (forwarded.get(port) === name) continue;
    const server = net.createServer((client) => {
      const upstream = net.createConnection(path.join(HOST_DIR, name));
      client.on('error', () => upstream.destroy());
      upstream.on('error', () => client.destroy());
      client.pipe(upstream).pipe(client);
    });
    const problem = await new Promise((resolve) => {
      server.once('error', (e) => resolve(e.message));
      server.listen(Number(port), '127.0.0.1', () => resolve(undefined));
    });
    if (problem) return { error: `cannot listen on 127.0.0.1:${port}: ${problem}` };
    forwarded.set(port, name);
  }
  return { ok: true };
}

async function check() {
  const { betaAgentToolset20260401 } = await import('@anthropic-ai/sdk/tools/agent-toolset/node');
  const names = betaAgentToolset20260401({ workdir: '/tmp' }).map((t) => t.name);
  const sdk = JSON.parse(
    fs.readFileSync(new URL('./node_modules/@anthropic-ai/sdk/package.json', import.meta.url), 'utf8'),
  );
  process.stdout.write(`node ${process.version}, @anthropic-ai/sdk ${sdk.version}, tools: ${names.join(' ')}\n`);
}

const [cmd] = process.argv.slice(2);
switch (cmd) {
  case 'serve':
    await serve();
    break;
  case 'check':
    await check();
    break;
  default:
    process.stderr.write('usage: toolbox.mjs serve | check\n');
    process.exit(2);
}
