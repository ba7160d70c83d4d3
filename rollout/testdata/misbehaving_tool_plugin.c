/* Test tool plugin that misbehaves on command, to check that a bad tool costs the rollout one
 * "error: ..." answer and nothing more. The call's body selects:
 *   "crash"   SIGSEGV            "hang"    spins forever, ignoring its deadline
 *   "leak"    allocates until the memory limit stops it
 *   "flood"   prints 8 MiB to stdout and stderr and claims a 1 GiB answer (fills its buffer)
 *   "fork"    starts 20 children that sleep forever, then answers "forked"
 *   "error"   returns an error;  anything else is echoed back.
 * With {"every_call": "crash"} (or another command) in its config, every call does that. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rollout/tool_plugin_abi.h"

static char every_call[32];

static void* create(const char* config, char* error, size_t error_size) {
  if (strstr(config, "\"fail_create\"")) {
    snprintf(error, error_size, "asked to fail");
    return NULL;
  }
  const char* p = strstr(config, "\"every_call\"");
  if (p && (p = strchr(p + 12, '"')) != NULL) {
    size_t n = strcspn(p + 1, "\"");
    if (n < sizeof every_call) memcpy(every_call, p + 1, n);
  }
  return (void*)1;
}

static void destroy(void* state) { (void)state; }

static int is(const char* input, size_t size, const char* word) {
  return size == strlen(word) && memcmp(input, word, size) == 0;
}

static int put(grpo_tool_output* out, int rc, const char* text, size_t n) {
  memcpy(out->data, text, n < out->capacity ? n : out->capacity);
  out->size = n;
  return rc;
}

static int run(void* state, const char* input, size_t size, int64_t deadline_ms, grpo_tool_output* out) {
  (void)state;
  (void)deadline_ms;
  if (every_call[0]) {
    input = every_call;
    size = strlen(every_call);
  }
  if (is(input, size, "crash")) raise(SIGSEGV);
  if (is(input, size, "hang")) for (volatile int spin = 1; spin;) {}
  if (is(input, size, "leak")) {
    for (;;) {
      char* p = (char*)malloc(1 << 20);
      if (!p) abort();
      memset(p, 1, 1 << 20);
    }
  }
  if (is(input, size, "flood")) {
    static char line[4096];
    memset(line, 'x', sizeof line);
    for (int i = 0; i < 2048; ++i) {
      if (write(1, line, sizeof line) < 0 || write(2, line, sizeof line) < 0) break;
    }
    memset(out->data, 'y', out->capacity);
    out->size = (size_t)1 << 30;
    return 0;
  }
  if (is(input, size, "fork")) {
    for (int i = 0; i < 20; ++i) {
      if (fork() == 0) {
        for (;;) pause();
      }
    }
    return put(out, 0, "forked", 6);
  }
  if (is(input, size, "error")) return put(out, 1, "asked to fail", 13);
  return put(out, 0, input, size);
}

static const grpo_tool_plugin kPlugin = {GRPO_TOOL_PLUGIN_ABI_VERSION, sizeof(grpo_tool_plugin),
                                         "misbehaving", "misbehaves on command (tests only)",
                                         create, destroy, run};

const grpo_tool_plugin* grpo_tool_plugin_v1(void) { return &kPlugin; }
