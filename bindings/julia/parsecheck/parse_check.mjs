// Parses every .jl file of the Julia bindings with the tree-sitter Julia
// grammar and fails on any syntax error (ERROR or MISSING node), printing
// where. There is no Julia runtime on the CI machines; this is the check
// that the generated and hand-written Julia at least parses.
//
//   cd bindings/julia/parsecheck && npm ci --ignore-scripts --legacy-peer-deps
//   node parse_check.mjs [files...]     (default: every .jl under ../Fibration)

import { readFileSync, readdirSync, statSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const Parser = require("web-tree-sitter");
const here = dirname(fileURLToPath(import.meta.url));

function julia_files(dir) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...julia_files(path));
    else if (name.endsWith(".jl")) out.push(path);
  }
  return out;
}

function problems(node, found) {
  if (node.type === "ERROR" || node.isMissing) found.push(node);
  else if (node.hasError) for (const child of node.children) problems(child, found);
  return found;
}

await Parser.init();
const wasm = require.resolve("tree-sitter-julia/tree-sitter-julia.wasm");
const Julia = await Parser.Language.load(wasm);
const parser = new Parser();
parser.setLanguage(Julia);

const files = process.argv.length > 2 ? process.argv.slice(2)
                                      : julia_files(join(here, "..", "Fibration"));
let failed = 0, passed = 0;
for (const file of files) {
  const text = readFileSync(file, "utf8");
  const tree = parser.parse(text);
  const bad = problems(tree.rootNode, []);
  const name = relative(process.cwd(), file);
  if (bad.length) {
    failed++;
    for (const n of bad.slice(0, 5)) {
      const line = text.split("\n")[n.startPosition.row];
      console.log(`${name}:${n.startPosition.row + 1}:${n.startPosition.column + 1}: ` +
                  `${n.isMissing ? "missing " + n.type : "syntax error"}\n    ${line}`);
    }
  } else {
    passed++;
    console.log(`ok ${name} (${tree.rootNode.namedChildCount} top-level forms)`);
  }
}
if (files.length === 0) { console.log("no Julia files found"); process.exit(2); }
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
