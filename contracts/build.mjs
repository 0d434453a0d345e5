// Compile the devnet's ERC-8004 registries (contracts/src/*.sol) with the pinned solcjs and write one
// artifact per contract to contracts/artifacts/<Name>.json = {contractName, abi, bytecode, compiler, sourceSha256}.
//
// Why committed artifacts: tests and `make run` need no compiler (solcjs is slow to load and the machine has no
// native solc); tests/indexing/test_contracts.py checks every artifact's sourceSha256 against its source, so a
// source edit without `make contracts` fails the suite.
//
// Offline and deterministic: imports resolve only to this repository and ./node_modules (OpenZeppelin, pinned in
// package.json); the CBOR metadata hash is not appended, so the bytecode depends only on the sources, the
// compiler and the settings below; JSON is written with stable formatting.
//
// Usage: node contracts/build.mjs   (or: make contracts)

import { createHash } from "node:crypto";
import { existsSync, readFileSync, readdirSync, writeFileSync, mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const solc = require("solc");

const PINNED_SOLC = "0.8.37";
const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, "..");
const SRC_DIR = join(HERE, "src");
const OUT_DIR = join(HERE, "artifacts");

// The settings are part of the artifact's identity: change them only together with a rebuild.
const SETTINGS = {
  optimizer: { enabled: true, runs: 200 },
  // viaIR: NewFeedback has eleven fields (five strings); the legacy pipeline runs out of stack slots for it.
  viaIR: true,
  // cancun: supported by anvil and every chain the project targets; pinned so a compiler default cannot move it.
  evmVersion: "cancun",
  metadata: { bytecodeHash: "none", appendCBOR: false },
  outputSelection: { "*": { "*": ["abi", "evm.bytecode.object"] } },
};

function sha256(text) {
  return createHash("sha256").update(text, "utf8").digest("hex");
}

function findImports(path) {
  const candidates = [join(ROOT, "node_modules", path), join(ROOT, path)];
  for (const candidate of candidates) {
    if (existsSync(candidate)) {
      return { contents: readFileSync(candidate, "utf8") };
    }
  }
  return { error: `import not found: ${path} (run make deps)` };
}

function main() {
  const version = solc.version();
  if (!version.startsWith(`${PINNED_SOLC}+`)) {
    throw new Error(`solcjs ${version} is not the pinned ${PINNED_SOLC}; run make deps`);
  }
  const files = readdirSync(SRC_DIR)
    .filter((name) => name.endsWith(".sol"))
    .sort();
  const sources = {};
  for (const file of files) {
    sources[`contracts/src/${file}`] = { content: readFileSync(join(SRC_DIR, file), "utf8") };
  }
  const input = { language: "Solidity", sources, settings: SETTINGS };
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));

  const errors = (output.errors || []).filter((e) => e.severity === "error");
  for (const diagnostic of output.errors || []) {
    process.stderr.write(diagnostic.formattedMessage + "\n");
  }
  if (errors.length > 0) {
    process.exit(1);
  }

  mkdirSync(OUT_DIR, { recursive: true });
  for (const file of files) {
    const name = file.replace(/\.sol$/, "");
    const key = `contracts/src/${file}`;
    const compiled = output.contracts[key] && output.contracts[key][name];
    if (!compiled) {
      throw new Error(`${file} must define a contract named ${name}`);
    }
    const artifact = {
      contractName: name,
      abi: compiled.abi,
      bytecode: "0x" + compiled.evm.bytecode.object,
      compiler: `solc-${version}`,
      sourceSha256: sha256(sources[key].content),
    };
    writeFileSync(join(OUT_DIR, `${name}.json`), JSON.stringify(artifact, null, 2) + "\n");
    process.stdout.write(`${name}: ${compiled.evm.bytecode.object.length / 2} bytes\n`);
  }
}

main();
