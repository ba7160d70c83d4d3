// The JavaScript side of bench/tokenizer_bench.sh: @lenml/tokenizers (transformers.js) encoding
// throughput on one core, measured the same way as tokenizer/tokenizer_bench.cc.
//   node bench/tokenizer_bench.js MODULES MODEL TEXT_FILE [PASSES]
// Prints: js MB/s=<x> cpuMB/s=<y> bytes=<n> tokens=<n> seconds=<s> cpu_seconds=<c>
// (cpu: the process's user+system time, which includes V8's GC and compiler threads).
"use strict";
const fs = require("fs");
const path = require("path");
const [modules, model, file, passesArg] = process.argv.slice(2);
const passes = Number(passesArg ?? 3);
const tokenizer = require(path.resolve(modules, "@lenml", "tokenizer-" + model)).fromPreTrained();
const buf = fs.readFileSync(file);
const chunks = [];
// ~4 KiB chunks cut at line ends, on the same byte offsets as the C++ side.
for (let pos = 0; pos < buf.length; ) {
  let end = Math.min(buf.length, pos + 4096);
  const nl = buf.indexOf(10, end);
  end = nl < 0 ? buf.length : nl + 1;
  chunks.push(buf.subarray(pos, end).toString("utf8"));
  pos = end;
}
let tokens = 0;
function run() {
  tokens = 0;
  for (const c of chunks) tokens += tokenizer.encode(c, { add_special_tokens: false }).length;
}
run(); // warm-up
const t0 = process.hrtime.bigint();
const c0 = process.cpuUsage();
for (let p = 0; p < passes; ++p) run();
const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
const c = process.cpuUsage(c0);
const cpuSeconds = (c.user + c.system) / 1e6;
const mb = (buf.length * passes) / 1e6;
console.log(`js MB/s=${(mb / seconds).toFixed(2)} cpuMB/s=${(mb / cpuSeconds).toFixed(2)} bytes=${buf.length} tokens=${tokens} seconds=${seconds.toFixed(3)} cpu_seconds=${cpuSeconds.toFixed(3)}`);
