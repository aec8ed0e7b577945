// Lists, and with --copy <dest> copies, @anthropic-ai/sdk and its runtime dependency closure from the project's
// node_modules (the sandbox image gets exactly these packages under /opt/tandem/node_modules).
//
//   node scripts/lib/sdk-closure.mjs <repo root>                 prints "<path under node_modules> <name>@<version>"
//   node scripts/lib/sdk-closure.mjs <repo root> --copy <dest>   also copies each package to <dest>/<path>
import * as fs from 'node:fs';
import * as path from 'node:path';

const [root, flag, dest] = process.argv.slice(2);
if (!root || (flag && (flag !== '--copy' || !dest))) {
  console.error('usage: sdk-closure.mjs <repo root> [--copy <dest>]');
  process.exit(2);
}
const modules = path.join(path.resolve(root), 'node_modules');

/** Node's lookup: <dir>/node_modules/<name>, then each parent directory's, up to the repo's node_modules. */
function locate(name, fromDir) {
  for (let dir = fromDir; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, 'node_modules', name);
    if (fs.existsSync(path.join(candidate, 'package.json'))) return candidate;
    if (dir === path.dirname(dir) || !dir.startsWith(path.dirname(modules))) return null;
  }
}

const seen = new Map(); // package dir -> "name@version"
const queue = [locate('@anthropic-ai/sdk', path.dirname(modules))];
if (!queue[0]) {
  console.error(`@anthropic-ai/sdk is not installed under ${modules}; run npm install first`);
  process.exit(1);
}
while (queue.length) {
  const dir = queue.shift();
  if (seen.has(dir)) continue;
  const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
  seen.set(dir, `${pkg.name}@${pkg.version}`);
  const optional = new Set(Object.keys(pkg.optionalDependencies ?? {}));
  for (const name of Object.keys({ ...pkg.dependencies, ...pkg.optionalDependencies })) {
    const found = locate(name, dir);
    if (found) queue.push(found);
    else if (!optional.has(name)) {
      console.error(`${pkg.name} needs ${name}, which is not installed; run npm install`);
      process.exit(1);
    }
  }
}

const rows = [...seen].map(([dir, id]) => [path.relative(modules, dir), id]).sort((a, b) => (a[0] < b[0] ? -1 : 1));
for (const [rel, id] of rows) {
  console.log(`${rel} ${id}`);
  if (dest) {
    // Nested node_modules are copied as packages of their own (only those in the closure).
    fs.cpSync(path.join(modules, rel), path.join(dest, rel), {
      recursive: true,
      dereference: true,
      filter: (src) => path.basename(src) !== 'node_modules' || src === path.join(modules, rel),
    });
  }
}
