// Escape tests: each one is an actual attempt from inside the sandbox that must fail while the
// host (this test process) stays up.
#include "sandbox/sandbox.h"

#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <seccomp.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <gtest/gtest.h>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "sandbox/process_count.h"

namespace grpo::sandbox {
namespace {

// An outside uid owned by no one else, this process included (concurrent runs of this test get
// their own): the sandboxes' leftovers are then countable.
const int64_t kTestOutsideUid = 200000 + getpid();

Config TestConfig() {
  Config c;
  c.outside_uid = kTestOutsideUid;
  return c;
}

Result MustRun(const Job& job, const Config& config = TestConfig()) {
  absl::StatusOr<Result> r = Run(config, job);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *r : Result();
}

Job Shell(const std::string& script) {
  Job j;
  j.argv = {"/bin/sh", "-c", script};
  return j;
}

Job Python(const std::string& code) {
  Job j;
  j.argv = {"/usr/bin/python3", "-S", "-c", code};
  return j;
}

// Run returns once the program has ended and the sandbox is killed; its processes are reaped
// in the background, so they may take a moment to disappear.
int ProcessesLeftAfterAMoment() { return LiveProcessesOfUidAfterAMoment(kTestOutsideUid); }

TEST(Sandbox, RunsAProgramAsAnUnprivilegedUserInAScratchDir) {
  Result r = MustRun(Shell("echo hello; id -u; id -g; pwd; hostname; echo err >&2; exit 3"));
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.signal, 0);
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.stdout_data, "hello\n1000\n1000\n/tmp\nsandbox\n");
  EXPECT_EQ(r.stderr_data, "err\n");
  std::cout << "cold sandboxed /bin/sh run: " << r.wall_time << "\n";
}

TEST(Sandbox, StdinIsDelivered) {
  Job j = Shell("tr a-z A-Z");
  j.stdin_data = std::string(200000, 'x');  // more than a pipe holds
  Result r = MustRun(j);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.stdout_data, std::string(200000, 'X'));
}

// A program that exits without reading its stdin closes the pipe under the host's writes: the
// host gets EPIPE, not a SIGPIPE that would end it.
TEST(Sandbox, UnreadStdinDoesNotKillTheHost) {
  Job j;
  j.argv = {"/bin/true"};
  j.stdin_data = std::string(4 << 20, 'x');  // far more than a pipe holds
  Result r = MustRun(j);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_FALSE(r.timed_out);
}

TEST(Sandbox, OutputIsCappedAndFlaggedTruncated) {
  Job j = Python("import sys\nsys.stdout.write('y' * 5000000)\nsys.stderr.write('e' * 100000)");
  j.stdout_cap = 1000;
  j.stderr_cap = 10;
  Result r = MustRun(j);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.stdout_data, std::string(1000, 'y'));
  EXPECT_TRUE(r.stdout_truncated);
  EXPECT_EQ(r.stderr_data, std::string(10, 'e'));
  EXPECT_TRUE(r.stderr_truncated);
}

TEST(Sandbox, NoNetwork) {
  int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(listener, 4), 0);
  socklen_t len = sizeof addr;
  getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);
  const int port = ntohs(addr.sin_port);
  Result r = MustRun(Python(absl::StrCat(R"(
import socket
for fam, host in ((socket.AF_INET, '127.0.0.1'), (socket.AF_INET, '8.8.8.8'), (socket.AF_INET6, '::1')):
    try:
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.settimeout(2)
        s.connect((host, )", port, R"())
        print('connected', host)
    except OSError as e:
        print('refused', e.errno)
try:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(('0.0.0.0', 8080)); s.listen(1)
    print('bound')
except OSError as e:
    print('bind refused', e.errno)
a, b = socket.socketpair()  # AF_UNIX stays allowed
a.send(b'ok'); print(b.recv(2).decode())
)")));
  EXPECT_EQ(r.exit_code, 0) << r.stderr_data;
  EXPECT_EQ(r.stdout_data, "refused 1\nrefused 1\nrefused 1\nbind refused 1\nok\n");
  close(listener);
}

TEST(Sandbox, CannotWriteOutsideScratch) {
  Result r = MustRun(Shell(
      "for f in /etc/x /usr/x /x /dev/x /proc/x /bin/x; do (echo a > $f) 2>/dev/null && echo wrote $f; done;"
      "echo data > /tmp/file && cat /tmp/file"));
  EXPECT_EQ(r.stdout_data, "data\n");
}

TEST(Sandbox, SeesOnlyTheReadOnlyView) {
  std::string secret = absl::StrCat(getenv("TEST_TMPDIR") ? getenv("TEST_TMPDIR") : "/tmp", "/host_secret");
  std::ofstream(secret) << "secret";
  Result r = MustRun(Shell(absl::StrCat(
      "for f in /etc/shadow /root /home ", secret, " /work; do test -e $f && echo visible $f; done;",
      "ls /; ls /etc")));
  EXPECT_EQ(r.stdout_data.find("visible"), std::string::npos) << r.stdout_data;
  EXPECT_EQ(r.stdout_data.find("shadow"), std::string::npos) << r.stdout_data;
  EXPECT_NE(r.stdout_data.find("usr"), std::string::npos) << r.stdout_data;
}

TEST(Sandbox, SeesNoHostProcesses) {
  Result r = MustRun(Python(
      "import os\nprint(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))\n"
      "print(os.getpid(), os.getppid())"));
  EXPECT_EQ(r.stdout_data, "[1, 2]\n2 1\n") << r.stderr_data;  // 1: the sandbox's init
}

TEST(Sandbox, CannotSignalOrTraceTheHostOrItsInit) {
  const int before = getpid();
  Result r = MustRun(Python(R"(
import ctypes, os, signal
libc = ctypes.CDLL(None, use_errno=True)
for pid in (os.getppid(), 1, )" + std::to_string(before) + R"():
    try:
        os.kill(pid, signal.SIGKILL) if pid not in (0, 1) else None
        print('signalled', pid)
    except OSError as e:
        print('kill refused', e.errno)
print('ptrace', libc.ptrace(16, 1, 0, 0), ctypes.get_errno())  # PTRACE_ATTACH
)"));
  EXPECT_EQ(getpid(), before);  // still here
  EXPECT_NE(r.stdout_data.find("ptrace -1 1\n"), std::string::npos) << r.stdout_data << r.stderr_data;
  EXPECT_NE(r.stdout_data.find("kill refused 3\n"), std::string::npos) << r.stdout_data;  // ESRCH
}

TEST(Sandbox, RefusesMountUnshareKeyctlBpfAndModules) {
  Result r = MustRun(Python(R"(
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
def errno_of(rc): return ctypes.get_errno() if rc == -1 else 0
print(errno_of(libc.mount(b'none', b'/tmp', b'tmpfs', 0, None)))
print(errno_of(libc.unshare(0x10000000)))   # CLONE_NEWUSER
print(errno_of(libc.syscall(250, 0, 0, 0, 0, 0)))  # keyctl
print(errno_of(libc.syscall(321, 0, 0, 0)))  # bpf
print(errno_of(libc.syscall(175, 0, 0, 0)))  # init_module
print(errno_of(libc.syscall(298, 0, 0, 0, 0, 0)))  # perf_event_open
print(errno_of(libc.syscall(169, 0, 0, 0, 0)))  # reboot
)"));
  EXPECT_EQ(r.stdout_data, "1\n1\n1\n1\n1\n1\n1\n") << r.stderr_data;
}

TEST(Sandbox, InheritsNoHostDescriptors) {
  int leaked = open("/proc/self/status", O_RDONLY);  // deliberately not close-on-exec
  ASSERT_GE(leaked, 0);
  Result r = MustRun(Python("import os\nprint(sorted(os.listdir('/proc/self/fd')))"));
  EXPECT_EQ(r.stdout_data, "['0', '1', '2', '3']\n") << r.stderr_data;  // 3: the listing itself
  close(leaked);
}

TEST(Sandbox, ReportsTheSignalThatEndedTheProgram) {
  Result r = MustRun(Python("import os, signal\nos.kill(os.getpid(), signal.SIGTERM)"));
  EXPECT_EQ(r.signal, SIGTERM);
  EXPECT_FALSE(r.timed_out);
  r = MustRun(Shell("kill -SEGV $$"));
  EXPECT_EQ(r.signal, SIGSEGV);
}

TEST(Sandbox, InfiniteLoopHitsTheDeadline) {
  Job j = Python("while True: pass");
  j.deadline = absl::Milliseconds(500);
  Result r = MustRun(j);
  EXPECT_TRUE(r.timed_out);
  EXPECT_EQ(r.signal, SIGKILL);
  EXPECT_LT(r.wall_time, absl::Seconds(5));
}

TEST(Sandbox, CpuLimitKillsASpinner) {
  Job j = Python("while True: pass");
  j.limits.cpu_seconds = 1;
  j.deadline = absl::Seconds(20);
  Result r = MustRun(j);
  EXPECT_FALSE(r.timed_out);
  EXPECT_TRUE(r.signal == SIGXCPU || r.signal == SIGKILL) << r.signal;
  // Under heavy load the CPU time reported for the killed spinner was seen below the 1 s limit
  // (750-880 ms at load average 240; why is not established), so the bound only checks that it
  // ran most of its second and was not killed at once.
  EXPECT_GE(r.cpu_time, absl::Milliseconds(500));
}

TEST(Sandbox, MemoryBombFails) {
  Job j = Python("x = bytearray(2 << 30)\nprint('allocated')");
  j.limits.address_space_bytes = 256 << 20;
  Result r = MustRun(j);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(r.stdout_data, "");
  EXPECT_NE(r.stderr_data.find("MemoryError"), std::string::npos) << r.stderr_data;
}

TEST(Sandbox, FillingTheDiskStopsAtTheLimits) {
  Job j = Python("f = open('/tmp/big', 'wb')\nwhile True: f.write(b'z' * 65536)");
  j.limits.file_size_bytes = 4 << 20;
  Result r = MustRun(j);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.stderr_data.find("File too large"), std::string::npos) << r.stderr_data;
  Config small = TestConfig();
  small.scratch_bytes = 2 << 20;
  r = MustRun(j, small);
  EXPECT_NE(r.stderr_data.find("No space left"), std::string::npos) << r.stderr_data;
}

TEST(Sandbox, ForkBombLeavesNothingBehind) {
  Job j = Python("import os\nwhile True:\n    try: os.fork()\n    except OSError: pass");
  j.limits.processes = 32;
  j.deadline = absl::Seconds(2);
  Result r = MustRun(j);
  EXPECT_TRUE(r.timed_out);
  EXPECT_EQ(ProcessesLeftAfterAMoment(), 0);
}

TEST(Sandbox, ChildrenDieWithTheProgram) {
  Result r = MustRun(Shell("sleep 1000 & sleep 1000 & echo started"));
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.stdout_data, "started\n");
  EXPECT_LT(r.wall_time, absl::Seconds(5));
  EXPECT_EQ(ProcessesLeftAfterAMoment(), 0);
}

TEST(Sandbox, PassedDescriptorsAreTheOnlyExtraOnes) {
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  Config c = TestConfig();
  c.fds = {{p[1], 5}};
  Result r = MustRun(Shell("echo through-5 >&5; ls /proc/self/fd | tr '\\n' ' '"), c);
  close(p[1]);
  char buf[64] = {};
  ASSERT_GT(read(p[0], buf, sizeof buf - 1), 0);
  EXPECT_EQ(std::string(buf), "through-5\n");
  EXPECT_EQ(r.stdout_data, "0 1 2 3 5 ");  // 3: ls's own directory
  close(p[0]);
}

TEST(Sandbox, ExtraBindsAreReadOnly) {
  std::string dir = absl::StrCat(getenv("TEST_TMPDIR") ? getenv("TEST_TMPDIR") : "/tmp", "/bound");
  mkdir(dir.c_str(), 0755);
  std::ofstream(dir + "/data.txt") << "payload";
  chmod((dir + "/data.txt").c_str(), 0644);
  Config c = TestConfig();
  c.binds = {{dir, "/data"}};
  Result r = MustRun(Shell("cat /data/data.txt; echo x > /data/data.txt 2>/dev/null || echo refused"), c);
  EXPECT_EQ(r.stdout_data, "payloadrefused\n");
}

TEST(Sandbox, BadJobsAreClearErrors) {
  Job j;
  j.argv = {"relative"};
  EXPECT_EQ(sandbox::Run(TestConfig(), j).status().code(), absl::StatusCode::kInvalidArgument);
  j.argv = {"/no/such/program"};
  absl::StatusOr<Result> r = sandbox::Run(TestConfig(), j);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("exec /no/such/program"), std::string::npos) << r.status();
  Config c = TestConfig();
  c.binds = {{"/no/such/host/path", "/x"}};
  EXPECT_FALSE(sandbox::Run(c, Shell("true")).ok());
  EXPECT_FALSE(ParseIsolation("strong").ok());
}

TEST(Sandbox, WeakIsolationStillLimitsAndKillsTheGroup) {
  Config c = TestConfig();
  c.isolation = Isolation::kWeak;
  Result r = MustRun(Shell("id -u; sleep 1000 & echo bg"), c);
  EXPECT_EQ(r.stdout_data, absl::StrCat(getuid() == 0 ? kTestOutsideUid : getuid(), "\nbg\n"));
  EXPECT_EQ(ProcessesLeftAfterAMoment(), 0);
  Result setsid = MustRun(Python("import os\ntry:\n    os.setsid(); print('left')\nexcept OSError as e: print(e.errno)"), c);
  EXPECT_EQ(setsid.stdout_data, "1\n");
  Job loop = Python("while True: pass");
  loop.deadline = absl::Milliseconds(300);
  EXPECT_TRUE(MustRun(loop, c).timed_out);
}

// A host that forbids user namespaces (simulated: clone with CLONE_NEWUSER refused by a
// seccomp filter in a child process) gets a clear error naming the reason.
// The check runs in a re-executed copy of this test (gtest's threadsafe death-test style): the
// filter must be installed in a process whose sandbox fork thread has not started yet.
void CheckWithoutUserNamespaces() {
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
  seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                   SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER));
  if (seccomp_load(ctx) != 0) _exit(10);
  absl::Status st = CheckNamespacesAvailable();
  std::cerr << st << "\n";
  bool clear = st.code() == absl::StatusCode::kFailedPrecondition &&
               st.message().find("user namespaces are unavailable") != std::string::npos &&
               st.message().find("weak") != std::string::npos;
  _exit(clear ? 0 : 11);
}

TEST(Sandbox, MissingUserNamespacesAreAClearError) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(CheckWithoutUserNamespaces(), testing::ExitedWithCode(0), "user namespaces are unavailable");
  EXPECT_TRUE(CheckNamespacesAvailable().ok());
}

}  // namespace
}  // namespace grpo::sandbox
