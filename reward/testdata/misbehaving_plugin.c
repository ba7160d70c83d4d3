/* Test plugin that misbehaves on command, to check worker isolation. The completion selects:
 * "crash" (SIGSEGV), "loop" (spins forever), "leak" (allocates until the memory limit kills
 * it), "abort", "error" (returns an error); anything else scores its length in bytes.
 * Attacks on the host, each scoring how far it got (0 = stopped):
 *   "kill:<pid>"  SIGTERM to <pid> (the host's pid, given by the test) and to its parent
 *   "fork"        starts 20 children that sleep forever
 *   "write-etc"   creates /etc/grpo_plugin_probe
 *   "bind:<port>" binds a TCP socket to 127.0.0.1:<port>
 *   "stdout"      prints PLUGIN-STDOUT-MARKER to its stdout and stderr
 *   "write-fds"   writes PLUGIN-FD-GARBAGE to every descriptor from 5 to 1023 */
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

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

static int starts(const grpo_reward_item* item, const char* prefix, long* arg) {
  size_t n = strlen(prefix);
  char buf[32];
  if (item->completion.size <= n || item->completion.size - n >= sizeof buf ||
      memcmp(item->completion.data, prefix, n) != 0)
    return 0;
  memcpy(buf, item->completion.data + n, item->completion.size - n);
  buf[item->completion.size - n] = '\0';
  *arg = strtol(buf, NULL, 10);
  return 1;
}

/* Returns how many of the attacks succeeded, or -1 when the completion names none. */
static double attack(const grpo_reward_item* item) {
  long arg = 0;
  if (starts(item, "kill:", &arg)) {
    kill(getppid(), SIGTERM);
    return kill((pid_t)arg, SIGTERM) == 0;
  }
  if (is(item, "fork")) {
    int n = 0;
    for (int i = 0; i < 20; ++i) {
      pid_t p = fork();
      if (p == 0) for (;;) pause();
      n += p > 0;
    }
    return n;
  }
  if (is(item, "write-etc")) return open("/etc/grpo_plugin_probe", O_WRONLY | O_CREAT, 0644) >= 0;
  if (starts(item, "bind:", &arg)) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)arg);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return s >= 0 && bind(s, (struct sockaddr*)&a, sizeof a) == 0 && listen(s, 1) == 0;
  }
  if (is(item, "stdout")) {
    printf("PLUGIN-STDOUT-MARKER\n");
    fflush(stdout);
    fprintf(stderr, "PLUGIN-STDOUT-MARKER\n");
    return 0;
  }
  if (is(item, "write-fds")) {
    int n = 0;
    for (int fd = 5; fd < 1024; ++fd) n += write(fd, "PLUGIN-FD-GARBAGE\n", 18) == 18;
    return n;
  }
  return -1;
}

static int score(void* state, const grpo_reward_item* item, grpo_reward_output* out) {
  (void)state;
  double a = attack(item);
  if (a >= 0) {
    out->score = a;
    return 0;
  }
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
