#pragma once
// Counts finished tasks without a shared hot cache line: each thread increments its own padded
// slot, and the waiting thread sums the slots. Every pool in a comparison uses it the same way.

#include <algorithm>  // for std::clamp
#include <atomic>     // for std::atomic
#include <chrono>     // for std::chrono
#include <cstddef>    // for std::size_t
#include <cstdint>    // for std::uint64_t
#include <thread>     // for std::this_thread::sleep_for

#include "tidepool/detail/cache_line.hpp"

namespace tidepool::perf {

class completion_counter {
 public:
  static constexpr std::size_t max_threads = 64;

  void count_one() noexcept {
    thread_local std::size_t slot = next_slot_.fetch_add(1) % max_threads;
    slots_[slot].value.fetch_add(1, std::memory_order_release);
  }

  [[nodiscard]] std::uint64_t total() const noexcept {
    std::uint64_t sum = 0;
    for (const auto& s : slots_) sum += s.value.load(std::memory_order_acquire);
    return sum;
  }

  // Sleeps until `expected` tasks have been counted, without taking a core from the workers: each
  // step is half the time the progress seen so far says is left (20 µs to 2 ms), so a run costs a
  // few dozen wake-ups and still ends within about one short step of the last task. A fixed
  // 20 µs step woke this thread ~15,000 times a second; on 2 cores each wake-up preempts a worker
  // or a producer, and a preempted lock holder stalls every thread of a mutex-based pool.
  void wait_for(std::uint64_t expected) const {
    using namespace std::chrono;
    using seconds_d = duration<double>;
    constexpr seconds_d shortest = microseconds(20);
    constexpr seconds_d longest = milliseconds(2);
    std::uint64_t done = total();
    auto seen_at = steady_clock::now();
    seconds_d step = shortest;
    while (done < expected) {
      std::this_thread::sleep_for(step);
      const std::uint64_t now_done = total();
      const auto now = steady_clock::now();
      if (now_done > done) {
        const double per_second = static_cast<double>(now_done - done) / seconds_d(now - seen_at).count();
        const seconds_d left(static_cast<double>(expected - std::min(expected, now_done)) / per_second);
        step = std::clamp(left / 2, shortest, longest);
      } else {
        step = std::min(step * 2, longest);
      }
      done = now_done;
      seen_at = now;
    }
  }

  void reset() noexcept {
    for (auto& s : slots_) s.value.store(0, std::memory_order_relaxed);
  }

 private:
  struct alignas(tidepool::detail::cache_line_size) slot {
    std::atomic<std::uint64_t> value{0};
  };
  static inline std::atomic<std::size_t> next_slot_{0};
  slot slots_[max_threads];
};

}  // namespace tidepool::perf
