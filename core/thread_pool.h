// ThreadPool: the one pool of worker threads that CPU kernels and services share.
//
// ParallelFor splits a range into a fixed number of contiguous chunks that depends only on the
// range, the grain and the pool size, never on timing, so a kernel that reduces per chunk is
// deterministic run to run. Which thread runs which chunk is decided at run time: the caller
// and the workers claim chunks from a shared counter, so a worker that is slow to wake costs
// nothing (the caller runs its chunk). Idle workers spin for a short while (about 100 µs)
// before they sleep, because model ops come in quick succession when decoding and a futex
// wake per op costs more than the op. A ParallelFor issued from inside a pool task, or while
// another thread's ParallelFor is using the workers, runs its chunks one after another on the
// calling thread (same chunks, no nested fan-out, no deadlock).
//
// ThreadPool::Default() is sized by the GRPO_NUM_THREADS environment variable, else by the
// number of hardware threads.
#ifndef GRPO_CORE_THREAD_POOL_H_
#define GRPO_CORE_THREAD_POOL_H_

#include <atomic>
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
  // last), on up to num_threads() threads, and returns when all are done. An exception thrown by
  // a chunk (std::bad_alloc of a kernel's scratch) is rethrown here, on the caller, after every
  // chunk has finished; when several throw, the first one caught. Workers never terminate the
  // process.
  void ParallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

  // Runs `task` on a worker thread some time later. For background work. An exception the task
  // throws is written to stderr (there is no caller to hand it to) and the worker goes on.
  void Schedule(std::function<void()> task);

  // The process-wide pool.
  static ThreadPool& Default();

 private:
  struct ForkJoin;
  void WorkerLoop();
  // Claims and runs chunks of `job` until none is left.
  void RunChunks(ForkJoin& job);
  bool HasWork() const;  // a fork-join job or a queued task is waiting

  const int num_threads_;
  std::vector<std::thread> workers_;

  // std::mutex and std::condition_variable, not absl::Mutex: the pool's state is atomics that
  // workers spin on, and the mutex only backs the futex sleep/wake handshake after the spin;
  // absl::Mutex's own spinning and waiter queue would change the wake latency of every op
  // (docs/PERFORMANCE.md), for one guarded member (queue_).
  std::mutex mu_;  // guards queue_ and the sleep/wake handshake
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  std::atomic<int64_t> queued_{0};
  std::atomic<bool> stopping_{false};
  std::atomic<int> sleepers_{0};

  std::mutex fork_mu_;                   // held by the one ParallelFor using the workers
  std::atomic<ForkJoin*> job_{nullptr};  // that ParallelFor's job, while it runs
  std::atomic<int> in_job_{0};           // workers that may still read *job_
};

}  // namespace grpo

#endif  // GRPO_CORE_THREAD_POOL_H_
