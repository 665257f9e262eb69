// Validate JSON objects (one per line on stdin) against a published schema with ajv:
//   node validate.mjs job < jobs.jsonl      (or: result)
// Prints one line per object: "ok", or "invalid <ajv's errors as JSON>". Exit 1 if any is invalid.
import { readFileSync } from "node:fs";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";

const kind = process.argv[2];
if (kind !== "job" && kind !== "result") {
  console.error("usage: node validate.mjs job|result < objects.jsonl");
  process.exit(2);
}
const schemaPath = new URL(`../../schema/${kind}.schema.json`, import.meta.url);
const schema = JSON.parse(readFileSync(schemaPath, "utf8"));
// Strict mode (the default) refuses unknown keywords and formats: the schema must pass it as is.
const ajv = new Ajv2020({ strict: true, allErrors: true });
addFormats(ajv);
const validate = ajv.compile(schema);

let invalid = 0;
for (const line of readFileSync(0, "utf8").split("\n")) {
  if (!line.trim()) continue;
  if (validate(JSON.parse(line))) {
    console.log("ok");
  } else {
    invalid += 1;
    // Paths and keywords only: messages quote the schema (long patterns), not needed here.
    console.log(`invalid ${JSON.stringify(validate.errors.map((e) => `${e.instancePath || "/"} ${e.keyword}`))}`);
  }
}
process.exit(invalid ? 1 : 0);
