// Validates an OpenAPI document (a file path, or a URL) against the OpenAPI 3.x schema with
// @apidevtools/swagger-parser, resolving every $ref. Prints the version and the number of
// operations; exits non-zero with the validator's errors when it is not valid.
import SwaggerParser from "@apidevtools/swagger-parser";
import { readFileSync } from "node:fs";

const src = process.argv[2];
if (!src) throw new Error("usage: node openapi.mjs <file or URL>");
const doc = src.startsWith("http") ? await (await fetch(src)).json() : JSON.parse(readFileSync(src, "utf8"));
try {
  const api = await SwaggerParser.validate(doc);
  const ops = Object.values(api.paths).reduce((n, item) => n + Object.keys(item).length, 0);
  console.log(`valid OpenAPI ${api.openapi}: ${Object.keys(api.paths).length} paths, ${ops} operations`);
} catch (e) {
  console.error(`invalid: ${e.message}`);
  process.exit(1);
}
