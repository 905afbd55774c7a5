#pragma once
// Counts finished tasks without a shared hot cache line: each thread increments its own padded
// slot, and the waiting thread sums the slots. Every pool in a comparison uses it the same way.

#include <atomic>   // for std::atomic
#include <cstddef>  // for std::size_t
#include <cstdint>  // for std::uint64_t
#include <thread>   // for std::this_thread::sleep_for
#include <chrono>   // for std::chrono::microseconds

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

  // Sleeps in short steps, so the waiting thread does not take a core from the workers.
  void wait_for(std::uint64_t expected) const {
    while (total() < expected) std::this_thread::sleep_for(std::chrono::microseconds(20));
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
