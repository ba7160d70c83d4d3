// InFlightLimit: admits at most `max` requests at once and refuses the rest at once (no queue),
// so that a service bounds the memory its requests hold and answers the excess with
// RESOURCE_EXHAUSTED (the client backs off or tries another replica).
//
//   InFlightLimit::Ticket t = limit.TryAcquire();
//   if (!t) return {grpc::StatusCode::RESOURCE_EXHAUSTED, "..."};
//   ... handle the request; the ticket is released when t goes out of scope.
//
// Thread-safe.
#ifndef GRPO_CORE_IN_FLIGHT_LIMIT_H_
#define GRPO_CORE_IN_FLIGHT_LIMIT_H_

#include <atomic>
#include <utility>

namespace grpo {

class InFlightLimit {
 public:
  // `max` < 1 admits nothing.
  explicit InFlightLimit(int max) : max_(max) {}
  InFlightLimit(const InFlightLimit&) = delete;
  InFlightLimit& operator=(const InFlightLimit&) = delete;

  // One admitted request; releases its place when destroyed. Move-only.
  class Ticket {
   public:
    Ticket() = default;
    Ticket(Ticket&& o) noexcept : limit_(std::exchange(o.limit_, nullptr)) {}
    Ticket& operator=(Ticket&& o) noexcept {
      if (this != &o) {
        Release();
        limit_ = std::exchange(o.limit_, nullptr);
      }
      return *this;
    }
    ~Ticket() { Release(); }
    // True when the request was admitted.
    explicit operator bool() const { return limit_ != nullptr; }

   private:
    friend class InFlightLimit;
    explicit Ticket(InFlightLimit* limit) : limit_(limit) {}
    void Release() {
      if (limit_ != nullptr) limit_->in_flight_.fetch_sub(1, std::memory_order_acq_rel);
      limit_ = nullptr;
    }
    InFlightLimit* limit_ = nullptr;
  };

  // An admission, or an empty ticket when `max` requests are already in flight.
  Ticket TryAcquire() {
    int n = in_flight_.load(std::memory_order_relaxed);
    do {
      if (n >= max_) return Ticket();
    } while (!in_flight_.compare_exchange_weak(n, n + 1, std::memory_order_acq_rel));
    return Ticket(this);
  }

  int max() const { return max_; }
  int in_flight() const { return in_flight_.load(std::memory_order_acquire); }

 private:
  const int max_;
  std::atomic<int> in_flight_{0};
};

}  // namespace grpo

#endif  // GRPO_CORE_IN_FLIGHT_LIMIT_H_
