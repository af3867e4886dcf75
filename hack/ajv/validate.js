// An independent judge of fleet files: js-yaml (YAML 1.2 core schema, as
// editors read files) and Ajv (JSON Schema draft 2020-12) against the
// schemas fleetd embeds. Schema only: no locations, no cross-file checks.
//
//   node validate.js SCHEMADIR corpus < cases.json   # verdict per case, as JSON
//   node validate.js SCHEMADIR dir FLEETDIR          # validate a fleet repo, print a count
//
// Modules come from NODE_PATH (the Makefile installs them, pinned by
// package-lock.json, into a cache directory).
'use strict';
const fs = require('fs');
const path = require('path');
const yaml = require('js-yaml');
const Ajv2020 = require('ajv/dist/2020');

const [schemaDir, mode, arg] = process.argv.slice(2);
const ajv = new Ajv2020({ allErrors: true, strict: false });
const validators = {};
for (const kind of ['fleet', 'cluster']) {
  const schema = JSON.parse(fs.readFileSync(path.join(schemaDir, kind + '.schema.json'), 'utf8'));
  validators[kind] = ajv.compile(schema);
}

function judge(kind, text) {
  let value;
  try {
    value = yaml.load(text, { schema: yaml.CORE_SCHEMA });
  } catch (e) {
    return { valid: false, errors: ['yaml: ' + e.reason] };
  }
  const v = validators[kind];
  if (v(value)) return { valid: true, errors: [] };
  return { valid: false, errors: v.errors.map((e) => `${e.instancePath} ${e.keyword} ${e.message}`) };
}

if (mode === 'corpus') {
  const cases = JSON.parse(fs.readFileSync(0, 'utf8'));
  const out = cases.map((c) => Object.assign({ name: c.name }, judge(c.kind, c.text)));
  process.stdout.write(JSON.stringify(out));
} else if (mode === 'dir') {
  let files = 0;
  let invalid = 0;
  const one = (kind, p) => {
    files++;
    if (!judge(kind, fs.readFileSync(p, 'utf8')).valid) invalid++;
  };
  one('fleet', path.join(arg, 'fleet.yaml'));
  const clusters = path.join(arg, 'clusters');
  for (const team of fs.readdirSync(clusters)) {
    const dir = path.join(clusters, team);
    if (!fs.statSync(dir).isDirectory()) continue;
    for (const name of fs.readdirSync(dir)) {
      if (/\.ya?ml$/.test(name) && !name.startsWith('.')) one('cluster', path.join(dir, name));
    }
  }
  process.stdout.write(`${files} files, ${invalid} invalid\n`);
  process.exitCode = invalid > 0 ? 1 : 0;
} else {
  process.stderr.write('usage: node validate.js SCHEMADIR corpus|dir [FLEETDIR]\n');
  process.exitCode = 2;
}
