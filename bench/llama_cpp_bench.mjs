// llama.cpp's side of bench/llama_cpp_bench.sh, through node-llama-cpp (tools/llama_cpp_npm.sh;
// its prebuilt CPU build, no GPU). The same workloads as `rollout_bench --llama-workloads`:
//   prefill_tok_s     one prompt of PROMPT_LEN tokens evaluated, no token generated
//   decode_bN_tok_s   N sequences (N = 1, 16) with prompts of 16 tokens decoding greedily
//                     together in one context, STEPS tokens each; the time to every sequence's
//                     first token (its prefill) is subtracted: N * (STEPS - 1) / (t_all - t_first)
// Each workload runs twice, the faster counts (as ours). Prints one JSON object. With
// LLAMA_GREEDY=1 it prints the greedy continuation (STEPS tokens) of the decode prompt instead;
// with LLAMA_B1_ONLY=1 it runs batch-1 decoding only.
//   node bench/llama_cpp_bench.mjs MODEL.gguf THREADS PROMPT_LEN STEPS FORMAT VOCAB
import path from "node:path";
import {fileURLToPath, pathToFileURL} from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const entry = path.join(here, "../third_party/llamacpp/node_modules/node-llama-cpp/dist/index.js");
const {getLlama, LlamaLogLevel} = await import(pathToFileURL(entry).href);

const [modelPath, threadsArg, promptArg, stepsArg, format, vocabArg] = process.argv.slice(2);
if (!vocabArg) {
  console.error("usage: node bench/llama_cpp_bench.mjs MODEL.gguf THREADS PROMPT_LEN STEPS FORMAT VOCAB");
  process.exit(2);
}
const threads = Number(threadsArg), promptLen = Number(promptArg), steps = Number(stepsArg);
const vocab = Number(vocabArg);

const llama = await getLlama({gpu: false, build: "never", maxThreads: threads,
                              logLevel: LlamaLogLevel.error});
const model = await llama.loadModel({modelPath, gpuLayers: 0});

// Prompt tokens as rollout_bench's Requests(n, len, salt): (7 i + 13 j + salt) % vocab.
const prompt = (i, len, salt) => Array.from({length: len}, (_, j) => (7 * i + 13 * j + salt) % vocab);
const now = () => Number(process.hrtime.bigint()) / 1e9;

async function withContext(sequences, fn) {
  const context = await model.createContext({
    contextSize: Math.max(1024, promptLen + 64) * sequences, sequences, batchSize: 512,
    threads: {ideal: threads, min: threads},
  });
  try {
    return await fn(context);
  } finally {
    await context.dispose();
  }
}

// Each repetition gets a fresh context (a disposed sequence is not handed out again).
async function prefill() {
  let best = Infinity;
  for (let rep = 0; rep < 2; ++rep) {
    await withContext(1, async (context) => {
      const seq = context.getSequence();
      const t0 = now();
      await seq.evaluateWithoutGeneratingNewTokens(prompt(0, promptLen, 4 + rep));
      best = Math.min(best, now() - t0);
    });
  }
  return promptLen / best;
}

async function decode(n) {
  let best = Infinity;
  for (let rep = 0; rep < 2; ++rep) {
    await withContext(n, async (context) => {
      const seqs = Array.from({length: n}, () => context.getSequence());
      const t0 = now();
      const firsts = [];
      await Promise.all(seqs.map(async (seq, i) => {
        let produced = 0;
        for await (const token of seq.evaluate(prompt(i, 16, 2 + rep), {temperature: 0})) {
          void token;
          if (++produced === 1) firsts.push(now());
          if (produced >= steps) break;
        }
      }));
      const tAll = now() - t0, tFirst = Math.max(...firsts) - t0;
      best = Math.min(best, tAll - tFirst);
    });
  }
  return n * (steps - 1) / best;
}

if (process.env.LLAMA_GREEDY) {
  // For the check that both sides run the same model: the greedy continuation of prompt 0.
  const tokens = await withContext(1, async (context) => {
    const got = [];
    for await (const token of context.getSequence().evaluate(prompt(0, 16, 2), {temperature: 0})) {
      got.push(token);
      if (got.length >= steps) break;
    }
    return got;
  });
  console.log(JSON.stringify({prompt: prompt(0, 16, 2), tokens}));
  process.exit(0);
}

const out = {impl: "llama.cpp", threads, format};
if (process.env.LLAMA_B1_ONLY) {  // batch-1 decoding only (a busy machine's key row)
  out.decode_b1_tok_s = await decode(1);
} else {
  out.prefill_tok_s = await prefill();
  out.decode_b1_tok_s = await decode(1);
  out.decode_b16_tok_s = await decode(16);
}
console.log(JSON.stringify(out));
await model.dispose();
await llama.dispose();
