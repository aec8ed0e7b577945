/**
 * Agent definition files (YAML or JSON): the schema, and a loader whose errors name the field path and the line.
 *
 * JSON files go through the YAML parser too (YAML 1.2 is a superset of JSON), so their errors carry lines as well.
 */
import { readFile } from 'node:fs/promises';
import { dirname, resolve as resolvePath } from 'node:path';
import { pathToFileURL } from 'node:url';
import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node } from 'yaml';
import { z } from 'zod';
import { secretRefs } from '../shared/mcp.js';
import { foldNetwork } from '../shared/network.js';
import { unpricedModels } from '../shared/pricing.js';
import { BUILTIN_TOOLS, type AgentDefinition, type RosterEntry } from '../shared/types.js';
import { SECRET_NAME } from '../vault/index.js';
import { TandemError } from '../shared/errors.js';

// ---------------------------------------------------------------------------------------------------------------
// Schema
// ---------------------------------------------------------------------------------------------------------------

/**
 * A strict object whose `unrecognized_keys` issue carries the list of known fields as its message; the formatter
 * below turns it into `unknown field "foo" (known fields: a, b, c)`.
 */
function strict<T extends z.core.$ZodLooseShape>(shape: T) {
  const known = Object.keys(shape).join(', ');
  return z.strictObject(shape, {
    error: (iss) => (iss.code === 'unrecognized_keys' ? `known fields: ${known}` : undefined),
  });
}

/** An integer field with a range; every failure says the whole range (`expected an integer from 64 to 65536`). */
function intIn(min: number, max?: number) {
  const expected = max === undefined ? `an integer >= ${min}` : `an integer from ${min} to ${max}`;
  const error = (iss: { input?: unknown }): string => `expected ${expected} (got ${describe(iss.input)})`;
  const base = z.int({ error }).min(min, { error });
  return max === undefined ? base : base.max(max, { error });
}

/** A number field with a range, reported like `intIn`. */
function numberIn(min: number, max: number) {
  const error = (iss: { input?: unknown }): string =>
    `expected a number from ${min} to ${max} (got ${describe(iss.input)})`;
  return z.number({ error }).min(min, { error }).max(max, { error });
}

const permissionPolicySchema = strict({
  type: z.enum(['always_allow', 'always_ask', 'auto']),
});

/** The hosted toolset's tools that Tandem does not offer, and why: naming one is refused with that sentence. */
const NOT_OFFERED: Record<string, string> = {
  web_search: 'Tandem has no web search provider, so the toolset does not offer web_search; remove it from configs',
  web_fetch: "Tandem's toolset does not offer web_fetch yet (use bash with curl where the network policy allows); remove it from configs",
};

const toolConfigSchema = strict({
  name: z.enum(BUILTIN_TOOLS, { error: (iss) => (typeof iss.input === 'string' ? NOT_OFFERED[iss.input] : undefined) }),
  enabled: z.boolean().nullable().optional(),
  permission_policy: permissionPolicySchema.nullable().optional(),
});

const agentToolsetSchema = strict({
  type: z.literal('agent_toolset_20260401'),
  default_config: strict({
    enabled: z.boolean().nullable().optional(),
    permission_policy: permissionPolicySchema.nullable().optional(),
  })
    .nullable()
    .optional(),
  configs: z.array(toolConfigSchema).optional(),
});

const BUILTIN_NAMES: readonly string[] = BUILTIN_TOOLS;

const customToolSchema = strict({
  type: z.literal('custom'),
  name: z
    .string()
    .regex(/^[a-zA-Z0-9_-]{1,64}$/, { error: 'expected 1-64 letters, digits, "_" or "-"' })
    .refine((n) => !BUILTIN_NAMES.includes(n), {
      error: `clashes with a built-in tool (${BUILTIN_TOOLS.join('|')}); choose another name`,
    }),
  description: z.string(),
  input_schema: z
    .record(z.string(), z.unknown())
    .refine((s) => s['type'] === 'object', { error: 'expected a JSON Schema with type: object' }),
});

const mcpToolConfigSchema = strict({
  name: z.string().min(1).max(128),
  enabled: z.boolean().nullable().optional(),
  permission_policy: permissionPolicySchema.nullable().optional(),
});

const mcpToolsetSchema = strict({
  type: z.literal('mcp_toolset'),
  mcp_server_name: z.string().min(1).max(255),
  default_config: strict({
    enabled: z.boolean().nullable().optional(),
    permission_policy: permissionPolicySchema.nullable().optional(),
  })
    .nullable()
    .optional(),
  configs: z.array(mcpToolConfigSchema).optional(),
});

const toolsSchema = z
  .array(z.discriminatedUnion('type', [agentToolsetSchema, customToolSchema, mcpToolsetSchema]))
  .superRefine((tools, ctx) => {
    const seen = new Set<string>();
    const servers = new Set<string>();
    tools.forEach((t, i) => {
      if (t.type === 'mcp_toolset') {
        if (servers.has(t.mcp_server_name)) {
          const message = 'a second mcp_toolset for the same server; merge them into one';
          ctx.addIssue({ code: 'custom', path: [i, 'mcp_server_name'], message, input: t.mcp_server_name });
        }
        servers.add(t.mcp_server_name);
        return;
      }
      if (t.type !== 'custom') return;
      if (seen.has(t.name)) {
        ctx.addIssue({ code: 'custom', path: [i, 'name'], message: 'duplicate custom tool name', input: t.name });
      }
      seen.add(t.name);
    });
  });

const secretNameSchema = z.string().regex(SECRET_NAME, {
  error: 'expected a secret name: a letter, then letters, digits, "_", "-", "." or "/" (at most 128)',
});

/** A literal (with optional `${secret:NAME}` parts) or `{secret: NAME}`: values come from the worker's vault. */
const secretValueSchema = z.union([
  z.string().refine((v) => secretRefs(v).every((n) => SECRET_NAME.test(n)), {
    error: 'a ${secret:NAME} reference needs a valid secret name (a letter, then letters, digits, "_", "-", "." or "/")',
  }),
  strict({ secret: secretNameSchema }),
]);

const mcpServerName = z.string().min(1).max(255);

const mcpUrlServerSchema = strict({
  type: z.literal('url'),
  name: mcpServerName,
  url: z.string().refine((u) => /^https?:\/\/[^\s/]+/.test(u) && URL.canParse(u), {
    error: 'expected an http:// or https:// URL',
  }),
  headers: z.record(z.string().min(1), secretValueSchema).optional(),
});

const mcpStdioServerSchema = strict({
  type: z.literal('stdio'),
  name: mcpServerName,
  command: z.string().min(1),
  args: z.array(z.string()).optional(),
  env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, { error: 'expected an environment variable name' }), secretValueSchema).optional(),
  cwd: z.string().min(1).optional(),
});

const mcpServersSchema = z
  .array(z.discriminatedUnion('type', [mcpUrlServerSchema, mcpStdioServerSchema]))
  .max(20)
  .superRefine((servers, ctx) => {
    const seen = new Set<string>();
    servers.forEach((s, i) => {
      if (seen.has(s.name)) ctx.addIssue({ code: 'custom', path: [i, 'name'], message: 'duplicate MCP server name', input: s.name });
      seen.add(s.name);
    });
  });

const modelSchema = z.union([
  z.string().min(1),
  strict({
    id: z.string().min(1),
    max_tokens: intIn(1).optional(),
    effort: z.string().nullable().optional(),
  }),
]);

const sandboxSchema = strict({
  image: z.string().min(1).optional(),
  cpu: numberIn(0.1, 64).optional(),
  memory_mb: intIn(64, 65536).optional(),
  disk_mb: intIn(16, 1_048_576).optional(),
  pids_limit: intIn(16, 32768).optional(),
  network: strict({
    policy: z.enum(['none', 'limited', 'unrestricted']),
    allowed_hosts: z.array(z.string().min(1)).optional(),
    allow_package_managers: z.boolean().optional(),
    allow_mcp_servers: z.boolean().optional(),
  })
    .superRefine((n, ctx) => {
      if (n.policy === 'limited') return;
      const why = n.policy === 'none' ? 'policy none allows no network at all' : 'policy unrestricted allows every public host';
      for (const field of ['allowed_hosts', 'allow_package_managers', 'allow_mcp_servers'] as const) {
        const v = n[field];
        if (v === undefined || v === false || (Array.isArray(v) && v.length === 0)) continue;
        ctx.addIssue({ code: 'custom', path: [field], message: `${field} needs policy: limited (${why})`, input: v });
      }
    })
    .optional(),
  workspace: z.enum(['persistent', 'ephemeral']).optional(),
  idle_timeout_s: intIn(10).optional(),
});

/** A repository URL: http(s) without credentials, `file:///` (a repository on the worker host), or a path to one. */
const REPOSITORY_URL = /^(https?:\/\/[^\s/@]+(\/[^\s]*)?|file:\/\/\/.+|\.{0,2}\/.*)$/;

/** Schema of one repository resource (agent files and session starts). */
export const resourceSchema = strict({
  type: z.enum(['github_repository', 'git_repository']),
  url: z.string().regex(REPOSITORY_URL, {
    error:
      'expected an http(s) URL without credentials in it, or a local git repository: a file:/// URL, ' +
      'or in an agent file a path (relative to the file)',
  }),
  checkout: z
    .discriminatedUnion('type', [
      strict({ type: z.literal('branch'), name: z.string().min(1) }),
      strict({ type: z.literal('commit'), sha: z.string().regex(/^[0-9a-f]{7,64}$/, { error: 'expected a commit SHA' }) }),
    ])
    .nullable()
    .optional(),
  mount_path: z
    .string()
    .regex(/^\/(workspace|tmp)(\/[A-Za-z0-9._-]+)+$/, { error: 'expected a path under /workspace or /tmp' })
    .nullable()
    .optional(),
  credential: z
    .string()
    .regex(SECRET_NAME, { error: 'expected a vault secret name (the token itself never goes in an agent file)' })
    .nullable()
    .optional(),
  push_branches: z.array(z.string().min(1)).nullable().optional(),
}).superRefine((r, ctx) => {
  if (!isLocalPath(r.url) && !r.url.startsWith('file:')) return;
  if (r.type !== 'git_repository')
    ctx.addIssue({ code: 'custom', path: ['type'], message: 'a local repository is a git_repository', input: r.type });
  if (r.credential)
    ctx.addIssue({
      code: 'custom',
      path: ['credential'],
      message: 'a local repository takes no credential',
      input: r.credential,
    });
});

/** Whether a repository `url` is a path (an agent file's way to name a local repository) rather than a URL. */
export function isLocalPath(url: string): boolean {
  return /^\.{0,2}\//.test(url);
}

const limitsSchema = strict({
  max_turns: intIn(1).optional(),
  max_output_tokens: intIn(1).optional(),
  max_cost_usd: z.number().positive().max(1_000_000).optional(),
  model_attempts: intIn(1, 20).optional(),
  tool_attempts: intIn(1, 10).optional(),
  context_tokens: intIn(1000, 2_000_000).optional(),
});

/**
 * `multiagent`: the agents this one may delegate to. In a file each entry is the path of another agent file
 * (relative to this one) or `{type: self}`; the loader inlines the files.
 */
const multiagentSchema = strict({
  type: z.literal('coordinator'),
  agents: z.array(z.union([z.string().min(1), strict({ type: z.literal('self') })])).min(1).max(20),
  max_depth: intIn(1, 5).optional(),
  concurrent_sandbox: z.boolean().optional(),
  max_concurrent: intIn(1, 32).optional(),
  max_delegations_per_turn: intIn(1, 64).optional(),
});

/** Schema of an agent definition file: the Managed Agents agent fields plus Tandem's `sandbox` and `limits`. */
export const agentDefinitionSchema = strict({
  name: z.string().min(1),
  model: modelSchema,
  system: z.string().nullable().optional(),
  description: z.string().nullable().optional(),
  tools: toolsSchema.optional(),
  mcp_servers: mcpServersSchema.optional(),
  metadata: z.record(z.string(), z.string()).optional(),
  multiagent: multiagentSchema.nullable().optional(),
  sandbox: sandboxSchema.optional(),
  limits: limitsSchema.optional(),
  resources: z.array(resourceSchema).optional(),
})
  .superRefine((agent, ctx) => {
    // Every mcp_toolset names a server of mcp_servers, and every server is used by one (as in Managed Agents).
    const servers = agent.mcp_servers ?? [];
    const used = new Set<string>();
    (agent.tools ?? []).forEach((t, i) => {
      if (t.type !== 'mcp_toolset') return;
      used.add(t.mcp_server_name);
      if (!servers.some((s) => s.name === t.mcp_server_name)) {
        const known = servers.map((s) => s.name).join(', ') || 'none';
        const message = `names no server of mcp_servers (known: ${known})`;
        ctx.addIssue({ code: 'custom', path: ['tools', i, 'mcp_server_name'], message, input: t.mcp_server_name });
      }
    });
    servers.forEach((s, i) => {
      if (used.has(s.name)) return;
      const message = `server "${s.name}" is not used: add {type: mcp_toolset, mcp_server_name: ${s.name}} to tools`;
      ctx.addIssue({ code: 'custom', path: ['mcp_servers', i, 'name'], message, input: s.name });
    });
  })
  .meta({ title: 'Tandem agent definition' });

// The schema must produce exactly `AgentDefinition`: both directions must be assignable.
// (`multiagent` in a file names other files; the loaded definition holds them inlined, a superset.)
type SchemaOutput = z.output<typeof agentDefinitionSchema>;
const _outputIsDefinition = (x: SchemaOutput): AgentDefinition => x;
const _definitionIsOutput = (x: Omit<AgentDefinition, 'multiagent'>): Omit<SchemaOutput, 'multiagent'> => x;
void _outputIsDefinition;
void _definitionIsOutput;
// ...and have no field `AgentDefinition` lacks (an extra optional field would pass the two checks above).
const _noExtraFields: [Exclude<keyof SchemaOutput, keyof AgentDefinition>] extends [never] ? true : false = true;
void _noExtraFields;

/** JSON Schema (draft 2020-12) of agent definition files, for editors and documentation. */
export function agentJsonSchema(): Record<string, unknown> {
  return z.toJSONSchema(agentDefinitionSchema) as Record<string, unknown>;
}

// ---------------------------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------------------------

/** One problem of an agent file. `path` is dotted (`tools[0].configs[1].name`), empty for the whole file. */
export interface AgentFileProblem {
  path: string;
  line?: number;
  column?: number;
  message: string;
}

/** An agent file that cannot be used; the message has one `file:line:col: path: problem` line per problem. */
export class AgentFileError extends TandemError {
  constructor(
    readonly file: string,
    readonly problems: AgentFileProblem[],
  ) {
    super(problems.map((p) => formatProblem(file, p)).join('\n'));
  }
}

function formatProblem(file: string, p: AgentFileProblem): string {
  const where = p.line === undefined ? file : `${file}:${p.line}:${p.column ?? 1}`;
  return p.path ? `${where}: ${p.path}: ${p.message}` : `${where}: ${p.message}`;
}

/** `['tools', 0, 'configs', 1, 'name']` → `tools[0].configs[1].name`. */
function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else {
      const key = String(seg);
      if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(key)) out += out ? `.${key}` : key;
      else out += `[${JSON.stringify(key)}]`;
    }
  }
  return out;
}

/** Short description of a value for `(got ...)`. */
function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value);
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  return String(value);
}

const TYPE_NAMES: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  int: 'an integer',
  boolean: 'true or false',
  object: 'a mapping',
  record: 'a mapping',
  array: 'a list',
  null: 'null',
};

function typeName(expected: string): string {
  return TYPE_NAMES[expected] ?? expected;
}

/** Where a problem points: at the value, at the key of the field, or at the object that lacks a field. */
type Anchor = 'value' | 'key' | 'parent';

interface RawProblem {
  path: PropertyKey[];
  anchor: Anchor;
  message: string;
}

/** The value at `path` in plain data, and whether it exists. */
function valueAt(data: unknown, path: readonly PropertyKey[]): { found: boolean; value: unknown } {
  let cur: unknown = data;
  for (const seg of path) {
    if (cur === null || typeof cur !== 'object' || !Object.prototype.hasOwnProperty.call(cur, seg)) {
      return { found: false, value: undefined };
    }
    cur = (cur as Record<PropertyKey, unknown>)[seg];
  }
  return { found: true, value: cur };
}

function isRootTypeMismatch(issues: readonly z.core.$ZodIssue[]): boolean {
  return issues.length === 1 && issues[0]?.code === 'invalid_type' && issues[0].path.length === 0;
}

/** Turns zod issues into problems with our own wording (the data is at hand, so `got` is exact). */
function explain(issue: z.core.$ZodIssue, data: unknown, prefix: PropertyKey[], out: RawProblem[]): void {
  const path = [...prefix, ...issue.path];
  const at = valueAt(data, path);
  const parent = path.length > 0 ? valueAt(data, path.slice(0, -1)) : undefined;
  const last = path[path.length - 1];

  // A field that is not there at all, in an object that is there.
  if (
    !at.found &&
    parent?.found &&
    parent.value !== null &&
    typeof parent.value === 'object' &&
    !Array.isArray(parent.value) &&
    issue.code !== 'unrecognized_keys'
  ) {
    out.push({ path, anchor: 'parent', message: `missing required field ${JSON.stringify(String(last))}` });
    return;
  }

  const got = `(got ${describe(at.value)})`;
  switch (issue.code) {
    case 'custom':
    case 'invalid_format': {
      // Refinements name what is expected; add what was there when it is short enough to show.
      const scalar = at.value === null || typeof at.value !== 'object';
      out.push({ path, anchor: 'value', message: scalar ? `${issue.message} ${got}` : issue.message });
      return;
    }
    case 'unrecognized_keys':
      for (const key of issue.keys) {
        out.push({ path: [...path, key], anchor: 'key', message: `unknown field ${JSON.stringify(key)} (${issue.message})` });
      }
      return;
    case 'invalid_union': {
      if (issue.discriminator !== undefined) {
        // `path` already ends with the discriminator key; `at.value` is its value.
        const options = ('options' in issue ? (issue.options ?? []) : []).map(String).join('|');
        out.push({ path, anchor: 'value', message: `expected one of ${options} ${got}` });
        return;
      }
      // Explain the branch whose type matched, when exactly one did; otherwise list the accepted types.
      const matched = issue.errors.filter((branch) => !isRootTypeMismatch(branch));
      if (matched.length === 1 && matched[0]) {
        for (const sub of matched[0]) explain(sub, data, path, out);
        return;
      }
      const types = issue.errors.flatMap((branch) =>
        isRootTypeMismatch(branch) && branch[0]?.code === 'invalid_type' ? [typeName(branch[0].expected)] : [],
      );
      const expected = types.length > 0 ? types.join(' or ') : 'a different value';
      out.push({ path, anchor: 'value', message: `expected ${expected} ${got}` });
      return;
    }
    case 'invalid_key':
      for (const sub of issue.issues) {
        out.push({ path, anchor: 'key', message: `invalid key: ${sub.message}` });
      }
      return;
    default:
      // invalid_type, invalid_value, too_small, too_big: worded by `errorMap` or by the field's own error.
      out.push({ path, anchor: 'value', message: issue.message });
  }
}

/** Wording of zod's issues for this file format (the field's own `error` wins over it). */
const errorMap: z.core.$ZodErrorMap = (iss) => {
  const got = `(got ${describe(iss.input)})`;
  switch (iss.code) {
    case 'invalid_type':
      return `expected ${typeName(iss.expected)} ${got}`;
    case 'invalid_value': {
      const values = iss.values.map(String);
      const expected = values.length === 1 ? JSON.stringify(values[0]) : `one of ${values.join('|')}`;
      return `expected ${expected} ${got}`;
    }
    case 'too_small':
    case 'too_big': {
      const small = iss.code === 'too_small';
      const op = small ? (iss.inclusive ? '>=' : '>') : iss.inclusive ? '<=' : '<';
      const bound = small ? iss.minimum : iss.maximum;
      if (iss.origin === 'string') {
        return small && Number(bound) <= 1
          ? `expected a non-empty string ${got}`
          : `expected a string of length ${op} ${bound} ${got}`;
      }
      if (iss.origin === 'array') return `expected a list with ${op} ${bound} items ${got}`;
      return `expected a number ${op} ${bound} ${got}`;
    }
    default:
      return undefined;
  }
};

// ---------------------------------------------------------------------------------------------------------------
// Source positions
// ---------------------------------------------------------------------------------------------------------------

interface Step {
  /** The value node at this prefix of the path (null when the pair has no value node). */
  node: Node | null;
  /** The key node of the pair holding it, when it is a mapping value. */
  key: Node | null;
}

function resolveNode(doc: Document, node: unknown): Node | null {
  if (isAlias(node)) return (node.resolve(doc) as Node | undefined) ?? null;
  return (node as Node | null) ?? null;
}

/** Nodes along `path`: element 0 is the document root; stops where the path leaves the document. */
function walk(doc: Document, path: readonly PropertyKey[]): Step[] {
  const steps: Step[] = [{ node: resolveNode(doc, doc.contents), key: null }];
  for (const seg of path) {
    const cur = steps[steps.length - 1]?.node;
    if (isMap(cur)) {
      const pair = cur.items.find((p) => {
        const k = p.key;
        return (isScalar(k) ? String(k.value) : String(k)) === String(seg);
      });
      if (!pair) break;
      steps.push({ node: resolveNode(doc, pair.value), key: (pair.key as Node | null) ?? null });
    } else if (isSeq(cur) && typeof seg === 'number') {
      const item: unknown = cur.items[seg];
      if (item === undefined) break;
      steps.push({ node: resolveNode(doc, item), key: null });
    } else break;
  }
  return steps;
}

/** A node's start, unless it is an empty scalar (`key:` with nothing after it). */
function startOf(node: Node | null): number | undefined {
  if (!node?.range) return undefined;
  if (isScalar(node) && node.value === null && node.range[0] === node.range[1]) return undefined;
  return node.range[0];
}

function locate(doc: Document, lc: LineCounter, path: readonly PropertyKey[], anchor: Anchor) {
  const steps = walk(doc, path);
  let target: Step | undefined;
  if (anchor === 'parent') target = steps[Math.min(path.length - 1, steps.length - 1)];
  else target = steps[steps.length - 1];
  if (!target) return {};
  const complete = steps.length === path.length + 1;
  let offset: number | undefined;
  if (anchor === 'value' && complete) offset = startOf(target.node) ?? startOf(target.key);
  else offset = startOf(target.key) ?? startOf(target.node);
  if (offset === undefined) return {};
  const { line, col } = lc.linePos(offset);
  return { line, column: col };
}

// ---------------------------------------------------------------------------------------------------------------
// Parsing and loading
// ---------------------------------------------------------------------------------------------------------------

/** Parses and validates the text of an agent file (YAML or JSON); throws `AgentFileError` on any problem. */
export function parseAgentDefinition(text: string, file = '<input>'): AgentDefinition {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false });
  if (doc.errors.length > 0) {
    throw new AgentFileError(
      file,
      doc.errors.map((e) => {
        const { line, col } = lc.linePos(e.pos[0]);
        return { path: '', line, column: col, message: `invalid YAML: ${e.message}` };
      }),
    );
  }

  let data: unknown;
  try {
    data = doc.toJS();
  } catch (err) {
    throw new AgentFileError(file, [{ path: '', message: `invalid YAML: ${(err as Error).message}` }]);
  }
  if (data === null || data === undefined) {
    throw new AgentFileError(file, [{ path: '', message: 'the file is empty; expected a mapping of agent fields' }]);
  }
  if (typeof data !== 'object' || Array.isArray(data)) {
    const pos = locate(doc, lc, [], 'value');
    throw new AgentFileError(file, [
      { path: '', ...pos, message: `expected a mapping of agent fields (got ${describe(data)})` },
    ]);
  }

  const parsed = agentDefinitionSchema.safeParse(data, { error: errorMap });
  if (parsed.success) {
    const agent: AgentDefinition = parsed.data;
    const network = agent.sandbox?.network;
    if (!network) return agent;
    return { ...agent, sandbox: { ...agent.sandbox, network: foldNetwork(network, agent.mcp_servers ?? []) } };
  }

  const raw: RawProblem[] = [];
  for (const issue of parsed.error.issues) explain(issue, data, [], raw);
  const problems = raw.map((p) => ({ path: formatPath(p.path), ...locate(doc, lc, p.path, p.anchor), message: p.message }));
  const key = (p: AgentFileProblem): number => (p.line ?? 1e9) * 1e6 + (p.column ?? 0);
  problems.sort((a, b) => key(a) - key(b));
  throw new AgentFileError(file, problems);
}

/**
 * Reads and validates an agent file (`.yaml`, `.yml` or `.json`), and the agent files its `multiagent` roster names
 * (inlined, so a session pins every sub-agent's definition when it starts).
 */
export async function loadAgentFile(path: string, seen: readonly string[] = []): Promise<AgentDefinition> {
  const agent = withLocalRepositoryUrls(await readAgentFile(path), dirname(path));
  const roster = agent.multiagent?.agents;
  if (!roster) return checkBudgetable(path, agent);
  const agents: RosterEntry[] = [];
  for (const [i, entry] of roster.entries()) {
    if (typeof entry !== 'string') {
      agents.push(entry);
      continue;
    }
    const target = resolvePath(dirname(path), entry);
    const chain = [...seen, resolvePath(path)];
    if (chain.includes(target)) {
      throw new AgentFileError(path, [
        { path: `multiagent.agents[${i}]`, message: `${entry} names a file that names this one again; use {type: self} for recursion` },
      ]);
    }
    agents.push({ type: 'agent', definition: await loadAgentFile(target, chain) });
  }
  return checkBudgetable(path, { ...agent, multiagent: { ...agent.multiagent!, agents } });
}

/** An agent with a cost budget whose models (its own and its sub-agents') all have a price, or the file's error. */
function checkBudgetable(path: string, agent: AgentDefinition): AgentDefinition {
  const unpriced = agent.limits?.max_cost_usd === undefined ? [] : unpricedModels(agent);
  if (unpriced.length === 0) return agent;
  throw new AgentFileError(path, [
    {
      path: 'limits.max_cost_usd',
      message: `a cost budget needs a list price for every model the session can run, and Tandem has none for ${unpriced.join(', ')}`,
    },
  ]);
}

/**
 * Turns the paths that name local repositories in `resources` into `file://` URLs, relative ones against the agent
 * file's directory (`dir`), as the roster's files are: the session pins the absolute location.
 */
function withLocalRepositoryUrls(agent: AgentDefinition, dir: string): AgentDefinition {
  if (!agent.resources?.some((r) => isLocalPath(r.url))) return agent;
  const resources = agent.resources.map((r) =>
    isLocalPath(r.url) ? { ...r, url: pathToFileURL(resolvePath(dir, r.url)).href } : r,
  );
  return { ...agent, resources };
}

async function readAgentFile(path: string): Promise<AgentDefinition> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const message =
      code === 'ENOENT'
        ? 'agent file not found'
        : code === 'EISDIR'
          ? 'is a directory, expected an agent file'
          : `cannot read agent file: ${(err as Error).message}`;
    throw new AgentFileError(path, [{ path: '', message }]);
  }
  return parseAgentDefinition(text, path);
}
