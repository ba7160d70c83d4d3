#include "core/thread_pool.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <new>
#include <set>
#include <thread>
#include <utility>
#include <vector>

namespace grpo {
namespace {

TEST(ThreadPool, ParallelForCoversRangeExactlyOnce) {
  ThreadPool pool(4);
  for (int64_t n : {0, 1, 3, 4, 5, 100, 1001}) {
    std::vector<std::atomic<int>> hits(n);
    pool.ParallelFor(n, 1, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) hits[i]++;
    });
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "n=" << n << " i=" << i;
  }
}

TEST(ThreadPool, ChunksAreDeterministicAndRespectGrain) {
  ThreadPool pool(3);
  auto chunks_of = [&](int64_t n, int64_t grain) {
    std::mutex mu;
    std::set<std::pair<int64_t, int64_t>> chunks;
    pool.ParallelFor(n, grain, [&](int64_t b, int64_t e) {
      std::lock_guard<std::mutex> lock(mu);
      chunks.insert({b, e});
    });
    return chunks;
  };
  const auto first = chunks_of(1000, 10);
  EXPECT_EQ(first.size(), 3u);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(chunks_of(1000, 10), first);
  EXPECT_EQ(chunks_of(25, 10).size(), 3u);
  EXPECT_EQ(chunks_of(15, 10).size(), 2u);
  EXPECT_EQ(chunks_of(5, 10).size(), 1u);
}

TEST(ThreadPool, NestedParallelForRunsInline) {
  ThreadPool pool(2);
  std::atomic<int64_t> total{0};
  pool.ParallelFor(8, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      pool.ParallelFor(10, 1, [&](int64_t b2, int64_t e2) { total += e2 - b2; });
    }
  });
  EXPECT_EQ(total.load(), 80);
}

TEST(ThreadPool, NestedParallelForRunsTheSameChunks) {
  ThreadPool pool(3);
  std::mutex mu;
  std::set<std::pair<int64_t, int64_t>> outer_chunks, inner_chunks;
  pool.ParallelFor(1000, 10, [&](int64_t b, int64_t e) {
    std::lock_guard<std::mutex> lock(mu);
    outer_chunks.insert({b, e});
  });
  pool.ParallelFor(3, 1, [&](int64_t, int64_t) {
    pool.ParallelFor(1000, 10, [&](int64_t b, int64_t e) {
      std::lock_guard<std::mutex> lock(mu);
      inner_chunks.insert({b, e});
    });
  });
  EXPECT_EQ(inner_chunks, outer_chunks);
}

// Many short fork-joins in a row (decoding's pattern), from several threads at once: every
// element is covered exactly once each time and nothing hangs or reads a finished job.
TEST(ThreadPool, ManyShortParallelForsFromConcurrentCallers) {
  ThreadPool pool(4);
  std::vector<std::thread> callers;
  std::atomic<int64_t> errors{0};
  for (int t = 0; t < 3; ++t) {
    callers.emplace_back([&, t] {
      std::vector<int> hits(64 + t);
      for (int rep = 0; rep < 3000; ++rep) {
        std::fill(hits.begin(), hits.end(), 0);
        pool.ParallelFor(static_cast<int64_t>(hits.size()), 1, [&](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) hits[i]++;
        });
        for (int h : hits) errors += h != 1;
      }
    });
  }
  for (std::thread& c : callers) c.join();
  EXPECT_EQ(errors.load(), 0);
}

// Workers that went to sleep (idle longer than their spin) are woken by the next job.
TEST(ThreadPool, WakesSleepingWorkers) {
  ThreadPool pool(2);
  for (int rep = 0; rep < 5; ++rep) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    std::atomic<int> threads_seen{0};
    std::set<std::thread::id> ids;
    std::mutex mu;
    // Each chunk waits (bounded) for the other, so both threads must take part.
    pool.ParallelFor(2, 1, [&](int64_t, int64_t) {
      {
        std::lock_guard<std::mutex> lock(mu);
        ids.insert(std::this_thread::get_id());
      }
      threads_seen++;
      for (int i = 0; i < 2000 && threads_seen.load() < 2; ++i) {
        std::this_thread::sleep_for(std::chrono::microseconds(100));
      }
    });
    EXPECT_EQ(ids.size(), 2u) << "rep " << rep;
  }
}

TEST(ThreadPool, ScheduledTasksRunBeforeDestruction) {
  std::atomic<int> ran{0};
  {
    ThreadPool pool(3);
    for (int i = 0; i < 100; ++i) pool.Schedule([&] { ran++; });
  }
  EXPECT_EQ(ran.load(), 100);
}

// Out of memory inside a chunk reaches the caller as an exception, whichever thread ran it, and
// the pool keeps working afterwards.
TEST(ThreadPool, ChunkExceptionIsRethrownOnTheCaller) {
  ThreadPool pool(4);
  for (int64_t failing : {int64_t{0}, int64_t{3}}) {
    std::atomic<int64_t> ran{0};
    EXPECT_THROW(pool.ParallelFor(4, 1,
                                  [&](int64_t begin, int64_t) {
                                    ran.fetch_add(1);
                                    if (begin == failing) throw std::bad_alloc();
                                  }),
                 std::bad_alloc);
    EXPECT_EQ(ran.load(), 4);  // the other chunks still ran to the end
  }
  std::atomic<int64_t> sum{0};
  pool.ParallelFor(100, 1, [&](int64_t b, int64_t e) { sum.fetch_add(e - b); });
  EXPECT_EQ(sum.load(), 100);
}

TEST(ThreadPool, FailingBackgroundTaskDoesNotStopThePool) {
  std::atomic<int> done{0};
  {
    ThreadPool pool(2);
    pool.Schedule([] { throw std::bad_alloc(); });
    pool.Schedule([&] { done.fetch_add(1); });
  }
  EXPECT_EQ(done.load(), 1);
}

}  // namespace
}  // namespace grpo
