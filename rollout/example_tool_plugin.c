/* Example tool plugin: "sort". The call's body is a list of integers separated by spaces,
 * commas or newlines; the answer is the same integers in ascending order, separated by spaces
 * ({"descending": true} in tools.plugin_config reverses it). A token that is not an integer is
 * the call's error. Built as a shared library: bazel build //rollout:libexample_tool_plugin.so
 *
 * Deliberately plain C with no dependencies, to show the whole ABI in one page.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rollout/tool_plugin_abi.h"

#define MAX_NUMBERS 4096

typedef struct {
  int descending;
} sort_state;

static void* sort_create(const char* config, char* error, size_t error_size) {
  sort_state* st = (sort_state*)calloc(1, sizeof(sort_state));
  if (!st) {
    snprintf(error, error_size, "out of memory");
    return NULL;
  }
  st->descending = strstr(config, "\"descending\": true") != NULL || strstr(config, "\"descending\":true") != NULL;
  return st;
}

static void sort_destroy(void* state) { free(state); }

static int ascending(const void* a, const void* b) {
  long long x = *(const long long*)a, y = *(const long long*)b;
  return (x > y) - (x < y);
}

/* Writes the message into out (cut to its capacity) and returns `rc`. */
static int answer(grpo_tool_output* out, int rc, const char* text) {
  size_t n = strlen(text);
  memcpy(out->data, text, n < out->capacity ? n : out->capacity);
  out->size = n;
  return rc;
}

static int is_separator(char c) { return c == ' ' || c == ',' || c == '\n' || c == '\t' || c == '\r'; }

static int sort_run(void* state, const char* input, size_t size, int64_t deadline_ms, grpo_tool_output* out) {
  (void)deadline_ms; /* sorting 4096 numbers takes microseconds */
  static long long numbers[MAX_NUMBERS];
  char token[32];
  size_t count = 0, i = 0;
  while (i < size) {
    if (is_separator(input[i])) {
      ++i;
      continue;
    }
    size_t len = 0;
    while (i < size && !is_separator(input[i])) {
      if (len + 1 >= sizeof token) return answer(out, 1, "a number is too long");
      token[len++] = input[i++];
    }
    token[len] = '\0';
    char* end;
    errno = 0;
    long long v = strtoll(token, &end, 10);
    if (*end != '\0' || errno != 0) return answer(out, 1, "not an integer");
    if (count == MAX_NUMBERS) return answer(out, 1, "more than 4096 numbers");
    numbers[count++] = v;
  }
  qsort(numbers, count, sizeof numbers[0], ascending);
  size_t written = 0;
  for (size_t k = 0; k < count; ++k) {
    long long v = numbers[((sort_state*)state)->descending ? count - 1 - k : k];
    char buf[32];
    int n = snprintf(buf, sizeof buf, k ? " %lld" : "%lld", v);
    size_t room = written < out->capacity ? out->capacity - written : 0;
    memcpy(out->data + written, buf, (size_t)n < room ? (size_t)n : room);
    written += (size_t)n;
  }
  out->size = written;
  return 0;
}

static const grpo_tool_plugin kPlugin = {
    GRPO_TOOL_PLUGIN_ABI_VERSION, sizeof(grpo_tool_plugin),
    "sort", "sorts the integers of its input in ascending order",
    sort_create, sort_destroy, sort_run};

const grpo_tool_plugin* grpo_tool_plugin_v1(void) { return &kPlugin; }
