#include "core/thread_pool.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

namespace grpo {
namespace {

thread_local bool t_inside_pool_task = false;

// How long an idle worker, or a caller waiting for the last chunks, spins before it sleeps.
constexpr auto kWorkerSpin = std::chrono::microseconds(100);
constexpr auto kCallerSpin = std::chrono::microseconds(50);

int DefaultThreadCount() {
  if (const char* env = std::getenv("GRPO_NUM_THREADS")) {
    const int n = std::atoi(env);
    if (n > 0) return n;
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#else
  std::this_thread::yield();
#endif
}

// Spins until `done()` or `budget` has passed; returns done().
template <typename F>
bool SpinUntil(F&& done, std::chrono::microseconds budget) {
  const auto deadline = std::chrono::steady_clock::now() + budget;
  for (int i = 1;; ++i) {
    if (done()) return true;
    CpuRelax();
    if (i % 64 == 0 && std::chrono::steady_clock::now() > deadline) return done();
  }
}

// A scheduled task has no caller to report to: an exception (out of memory) is written to
// stderr and the worker goes on, instead of terminating the process.
void RunBackgroundTask(const std::function<void()>& task) {
  try {
    task();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "grpo: a background task failed: %s\n", e.what());
  } catch (...) {
    std::fprintf(stderr, "grpo: a background task failed with an unknown exception\n");
  }
}

}  // namespace

// One ParallelFor's work, on its caller's stack. Chunk c covers [c * per, min(n, c * per + per)).
struct ThreadPool::ForkJoin {
  const std::function<void(int64_t, int64_t)>* fn;
  int64_t n, per, chunks;
  std::atomic<int64_t> next{0};  // next unclaimed chunk
  std::atomic<int64_t> done{0};  // chunks finished
  std::atomic<bool> caller_sleeping{false};
  std::mutex mu;
  std::condition_variable cv;
  // The first exception a chunk threw (std::bad_alloc of a kernel's scratch): rethrown on the
  // caller once every chunk is done, so it reaches the command or request that asked for the
  // work instead of terminating a worker thread. Guarded by mu.
  std::exception_ptr error;
};

ThreadPool::ThreadPool(int num_threads) : num_threads_(std::max(1, num_threads)) {
  for (int i = 0; i + 1 < num_threads_; ++i) workers_.emplace_back([this] { WorkerLoop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (std::thread& t : workers_) t.join();
}

bool ThreadPool::HasWork() const { return job_.load() != nullptr || queued_.load() > 0; }

void ThreadPool::RunChunks(ForkJoin& job) {
  const bool was_inside = t_inside_pool_task;
  t_inside_pool_task = true;
  for (;;) {
    const int64_t c = job.next.fetch_add(1);
    if (c >= job.chunks) break;
    // The last chunk is claimed: idle workers need not look at this job any more.
    if (c == job.chunks - 1) job_.store(nullptr);
    const int64_t begin = c * job.per, end = std::min(job.n, begin + job.per);
    if (begin < end) {
      try {
        (*job.fn)(begin, end);
      } catch (...) {
        std::lock_guard<std::mutex> lock(job.mu);
        if (!job.error) job.error = std::current_exception();
      }
    }
    if (job.done.fetch_add(1) + 1 == job.chunks && job.caller_sleeping.load()) {
      std::lock_guard<std::mutex> lock(job.mu);
      job.cv.notify_one();
    }
  }
  t_inside_pool_task = was_inside;
}

void ThreadPool::WorkerLoop() {
  t_inside_pool_task = true;
  for (;;) {
    if (!SpinUntil([this] { return HasWork() || stopping_.load(); }, kWorkerSpin)) {
      std::unique_lock<std::mutex> lock(mu_);
      sleepers_.fetch_add(1);
      cv_.wait(lock, [this] { return HasWork() || stopping_.load(); });
      sleepers_.fetch_sub(1);
    }
    // A fork-join job: in_job_ keeps its caller from returning while this thread may read it.
    in_job_.fetch_add(1);
    if (ForkJoin* job = job_.load()) RunChunks(*job);
    in_job_.fetch_sub(1);
    std::function<void()> task;
    if (queued_.load() > 0) {
      std::lock_guard<std::mutex> lock(mu_);
      if (!queue_.empty()) {
        task = std::move(queue_.front());
        queue_.pop_front();
        queued_.fetch_sub(1);
      }
    }
    if (task) {
      RunBackgroundTask(task);
      continue;
    }
    if (stopping_.load() && queued_.load() == 0) return;  // stopping and drained
  }
}

void ThreadPool::Schedule(std::function<void()> task) {
  if (workers_.empty()) {  // a one-thread pool has no workers: run now
    task();
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(std::move(task));
    queued_.fetch_add(1);
  }
  cv_.notify_one();
}

void ThreadPool::ParallelFor(int64_t n, int64_t grain,
                             const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  const int64_t chunks = std::min<int64_t>(num_threads_, (n + grain - 1) / grain);
  if (chunks <= 1) {
    fn(0, n);
    return;
  }
  const int64_t per = (n + chunks - 1) / chunks;
  std::unique_lock<std::mutex> owner(fork_mu_, std::defer_lock);
  if (t_inside_pool_task || !owner.try_lock()) {
    // Nested, or the workers are busy with another thread's ParallelFor: the same chunks here.
    for (int64_t begin = 0; begin < n; begin += per) fn(begin, std::min(n, begin + per));
    return;
  }
  ForkJoin job;
  job.fn = &fn;
  job.n = n;
  job.per = per;
  job.chunks = chunks;
  job_.store(&job);
  if (sleepers_.load() > 0) {
    { std::lock_guard<std::mutex> lock(mu_); }  // a worker between its check and its wait
    cv_.notify_all();
  }
  RunChunks(job);
  auto all_done = [&] { return job.done.load() == chunks; };
  if (!SpinUntil(all_done, kCallerSpin)) {
    std::unique_lock<std::mutex> lock(job.mu);
    job.caller_sleeping.store(true);
    job.cv.wait(lock, all_done);
  }
  // job_ was cleared when the last chunk was claimed; wait for workers that may still hold it.
  while (in_job_.load() != 0) CpuRelax();
  if (job.error) std::rethrow_exception(job.error);
}

ThreadPool& ThreadPool::Default() {
  static ThreadPool* pool = new ThreadPool(DefaultThreadCount());  // never destroyed
  return *pool;
}

}  // namespace grpo
