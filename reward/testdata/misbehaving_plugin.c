/* Test plugin that misbehaves on command, to check worker isolation. The completion selects:
 * "crash" (SIGSEGV), "loop" (spins forever), "leak" (allocates until the memory limit kills
 * it), "abort", "error" (returns an error); anything else scores its length in bytes. */
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "reward/plugin_abi.h"

static void* create(const char* config, char* error, size_t error_size) {
  if (strstr(config, "\"fail_create\"")) {
    snprintf(error, error_size, "asked to fail");
    return NULL;
  }
  return (void*)1;
}

static void destroy(void* state) { (void)state; }

static int is(const grpo_reward_item* item, const char* word) {
  size_t n = strlen(word);
  return item->completion.size == n && memcmp(item->completion.data, word, n) == 0;
}

static int score(void* state, const grpo_reward_item* item, grpo_reward_output* out) {
  (void)state;
  if (is(item, "crash")) raise(SIGSEGV);
  if (is(item, "abort")) abort();
  if (is(item, "loop")) {
    volatile unsigned long x = 0;
    for (;;) ++x;
  }
  if (is(item, "leak")) {
    for (;;) {
      char* p = (char*)malloc(1 << 20);
      if (!p) abort();
      memset(p, 1, 1 << 20);
    }
  }
  if (is(item, "error")) {
    snprintf(out->message, sizeof out->message, "asked for an error");
    return 1;
  }
  out->score = (double)item->completion.size;
  return 0;
}

static const grpo_reward_plugin kPlugin = {GRPO_REWARD_PLUGIN_ABI_VERSION,
                                           sizeof(grpo_reward_plugin),
                                           "misbehaving",
                                           "test plugin",
                                           create,
                                           destroy,
                                           score};

const grpo_reward_plugin* grpo_reward_plugin_v1(void) { return &kPlugin; }
