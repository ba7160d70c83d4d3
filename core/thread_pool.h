// ThreadPool: the one pool of worker threads that CPU kernels and services share.
//
// ParallelFor splits a range into a fixed number of contiguous chunks that depends only on the
// range, the grain and the pool size, never on timing, so a kernel that reduces per chunk is
// deterministic run to run. The calling thread works on a chunk too. A ParallelFor issued from
// inside a pool task runs inline on that thread (no nested fan-out, no deadlock).
//
// ThreadPool::Default() is sized by the GRPO_NUM_THREADS environment variable, else by the
// number of hardware threads.
#ifndef GRPO_CORE_THREAD_POOL_H_
#define GRPO_CORE_THREAD_POOL_H_

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace grpo {

class ThreadPool {
 public:
  // A pool where `num_threads` threads (including the caller of ParallelFor) run work.
  explicit ThreadPool(int num_threads);
  ~ThreadPool();  // finishes queued tasks, then joins
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return num_threads_; }

  // Calls fn(begin, end) on disjoint chunks covering [0, n), each at least `grain` long (but the
  // last), on up to num_threads() threads, and returns when all are done.
  void ParallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

  // Runs `task` on a worker thread some time later. For background work (I/O, services).
  void Schedule(std::function<void()> task);

  // The process-wide pool.
  static ThreadPool& Default();

 private:
  void WorkerLoop();

  const int num_threads_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
};

}  // namespace grpo

#endif  // GRPO_CORE_THREAD_POOL_H_
