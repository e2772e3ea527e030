// Validates Prometheus Operator resources (PodMonitor, ...) against the CRD schemas shipped in
// the npm package @kubernetes-models/prometheus-operator, offline: kubernetes-validate knows only
// the built-in kinds. Input: a JSON array of resources on stdin. Exit 1 on any error or unknown kind.
// Usage: node deploy/k8s/monitoring/validate.mjs NODE_MODULES_DIR [PACKAGE] < resources.json
// PACKAGE: another @kubernetes-models package of CRD models, e.g. @kubernetes-models/gateway-api
// (the Gateway API resources of deploy/canary/).
import { readFileSync, existsSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const pkg = path.resolve(process.argv[2] ?? "node_modules", process.argv[3] ?? "@kubernetes-models/prometheus-operator");
const docs = JSON.parse(readFileSync(0, "utf8"));
let failed = 0;
for (const doc of docs) {
  const name = `${doc.kind}/${doc.metadata?.name}`;
  const index = path.join(pkg, doc.apiVersion ?? "", "index.js");
  const Model = existsSync(index) ? (await import(pathToFileURL(index)))[doc.kind] : undefined;
  if (!Model) {
    console.log(`FAIL ${name}: no schema for ${doc.apiVersion} ${doc.kind}`);
    failed++;
    continue;
  }
  try {
    new Model(doc).validate();
    console.log(`OK ${name} (${doc.apiVersion})`);
  } catch (err) {
    console.log(`FAIL ${name}: ${err.message}`);
    failed++;
  }
}
process.exit(failed ? 1 : 0);
