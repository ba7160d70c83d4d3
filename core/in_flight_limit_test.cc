#include "core/in_flight_limit.h"

#include <atomic>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace grpo {
namespace {

TEST(InFlightLimit, AdmitsUpToMaxAndRefusesTheRest) {
  InFlightLimit limit(2);
  InFlightLimit::Ticket a = limit.TryAcquire();
  InFlightLimit::Ticket b = limit.TryAcquire();
  EXPECT_TRUE(a);
  EXPECT_TRUE(b);
  EXPECT_EQ(limit.in_flight(), 2);
  InFlightLimit::Ticket c = limit.TryAcquire();
  EXPECT_FALSE(c);  // refused, not queued
  EXPECT_EQ(limit.in_flight(), 2);
  { InFlightLimit::Ticket gone = std::move(a); }  // released with its new owner
  EXPECT_FALSE(a);
  EXPECT_EQ(limit.in_flight(), 1);
  c = limit.TryAcquire();
  EXPECT_TRUE(c);
  c = InFlightLimit::Ticket();  // move-assigning releases the old one
  EXPECT_EQ(limit.in_flight(), 1);
}

TEST(InFlightLimit, ZeroAdmitsNothing) {
  InFlightLimit limit(0);
  EXPECT_FALSE(limit.TryAcquire());
  EXPECT_EQ(limit.in_flight(), 0);
}

TEST(InFlightLimit, NeverMoreThanMaxAcrossThreads) {
  InFlightLimit limit(3);
  std::atomic<int> peak{0}, admitted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 2000; ++i) {
        InFlightLimit::Ticket ticket = limit.TryAcquire();
        if (!ticket) continue;
        ++admitted;
        const int now = limit.in_flight();
        int p = peak.load();
        while (now > p && !peak.compare_exchange_weak(p, now)) {
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_LE(peak.load(), 3);
  EXPECT_GT(admitted.load(), 0);
  EXPECT_EQ(limit.in_flight(), 0);
}

}  // namespace
}  // namespace grpo
