/* Example reward plugin: "keyword". Scores 1.0 when the completion contains every keyword of
 * the rule's config ({"keywords": ["foo", "bar"]}), else the fraction of keywords found.
 * With no keywords configured, the gold answer is the one keyword (and an empty gold answer
 * is an error). Built as a shared library: bazel build //reward:libexample_reward_plugin.so
 *
 * Deliberately plain C with no dependencies, to show the whole ABI in one page.
 */
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "reward/plugin_abi.h"

#define MAX_KEYWORDS 32
#define MAX_KEYWORD_LEN 128

typedef struct {
  int count;
  char words[MAX_KEYWORDS][MAX_KEYWORD_LEN];
} keyword_state;

/* Reads the strings of the "keywords" array from a small JSON object (no escapes). */
static void* keyword_create(const char* config, char* error, size_t error_size) {
  keyword_state* st = (keyword_state*)calloc(1, sizeof(keyword_state));
  if (!st) {
    snprintf(error, error_size, "out of memory");
    return NULL;
  }
  const char* p = strstr(config, "\"keywords\"");
  if (!p) return st;
  p = strchr(p, '[');
  if (!p) {
    snprintf(error, error_size, "keywords must be a list of strings");
    free(st);
    return NULL;
  }
  ++p;
  while (*p && *p != ']') {
    const char* q = strchr(p, '"');
    if (!q) break;
    const char* e = strchr(q + 1, '"');
    if (!e) break;
    size_t n = (size_t)(e - q - 1);
    if (st->count >= MAX_KEYWORDS || n == 0 || n >= MAX_KEYWORD_LEN) {
      snprintf(error, error_size, "at most %d keywords of 1..%d bytes", MAX_KEYWORDS,
               MAX_KEYWORD_LEN - 1);
      free(st);
      return NULL;
    }
    memcpy(st->words[st->count], q + 1, n);
    st->words[st->count][n] = '\0';
    st->count++;
    p = e + 1;
    while (*p == ',' || *p == ' ') ++p;
  }
  return st;
}

static void keyword_destroy(void* state) { free(state); }

static int contains(grpo_str hay, const char* needle, size_t n) {
  if (n == 0 || n > hay.size) return n == 0;
  for (size_t i = 0; i + n <= hay.size; ++i)
    if (memcmp(hay.data + i, needle, n) == 0) return 1;
  return 0;
}

static int keyword_score(void* state, const grpo_reward_item* item, grpo_reward_output* out) {
  const keyword_state* st = (const keyword_state*)state;
  if (st->count == 0) {
    if (item->answer.size == 0) {
      snprintf(out->message, sizeof out->message, "keyword: empty gold answer");
      return 1;
    }
    out->score = contains(item->completion, item->answer.data, item->answer.size) ? 1.0 : 0.0;
    return 0;
  }
  int found = 0;
  for (int i = 0; i < st->count; ++i)
    found += contains(item->completion, st->words[i], strlen(st->words[i]));
  out->score = (double)found / (double)st->count;
  snprintf(out->message, sizeof out->message, "%d of %d keywords", found, st->count);
  return 0;
}

static const grpo_reward_plugin kKeywordPlugin = {
    GRPO_REWARD_PLUGIN_ABI_VERSION,
    sizeof(grpo_reward_plugin),
    "keyword",
    "fraction of configured keywords (or the gold answer) found in the completion",
    keyword_create,
    keyword_destroy,
    keyword_score,
};

const grpo_reward_plugin* grpo_reward_plugin_v1(void) { return &kKeywordPlugin; }
