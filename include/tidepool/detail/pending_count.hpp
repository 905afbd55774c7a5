#pragma once
// A count of unfinished work that a thread can wait on, and that the last finisher can bring to
// zero without touching the counter's memory afterwards.
//
// Why: the count lives inside an object (a task_group, a subpool) that its owner destroys as
// soon as the count reaches zero. The finisher's last access is the read-modify-write that
// brings it there; the wake-up that may follow passes only the word's address to the futex
// system call, which does not read the memory. So a finisher never touches a destroyed owner.

#include <atomic>   // for std::atomic
#include <chrono>   // for std::chrono::nanoseconds
#include <cstdint>  // for std::uint32_t

#include "tidepool/detail/futex.hpp"

namespace tidepool::detail {

class pending_count {
 public:
  // Before the work can start anywhere. seq_cst so that an owner that first announces "no more
  // work" and then waits can use it in a store→load argument (subpool submit vs stop_and_wait).
  void add() noexcept { word_.fetch_add(unit, std::memory_order_seq_cst); }

  // The finisher's last touch of the owner. Returns true only if the owner was abandoned and this
  // finish brought the count to zero: the caller then frees the owner (nobody else will).
  bool finish() noexcept {
    // acq_rel: everything the work did happens-before the acquire load that sees zero, and, for
    // an abandoned owner, before the free by the finisher that brings it there.
    const std::uint32_t before = word_.fetch_sub(unit, std::memory_order_acq_rel);
    const bool last = before / unit == 1;
    if (last && (before & waiter_bit) != 0) futex_wake_all(word_);
    return last && (before & abandoned_bit) != 0;
  }

  // For an owner that cannot wait (destroyed from inside its own work): from now on the finish
  // that brings the count to zero returns true, and its caller frees the owner. The caller must
  // itself hold a unit, so that this finish is still to come. The flag travels in the same word
  // as the count, so the last finisher learns it from its own read-modify-write, without reading
  // the owner afterwards (which a waiting owner may already have freed).
  void abandon() noexcept { word_.fetch_or(abandoned_bit, std::memory_order_relaxed); }

  [[nodiscard]] bool done() const noexcept { return word_.load(std::memory_order_acquire) < unit; }

  // Blocks until done(), or for at most `limit` if one is given. May return early.
  void block_until_done(const std::chrono::nanoseconds* limit = nullptr) noexcept {
    std::uint32_t word = word_.load(std::memory_order_acquire);
    while (word >= unit) {
      if ((word & waiter_bit) == 0) {
        if (!word_.compare_exchange_weak(word, word | waiter_bit, std::memory_order_acq_rel,
                                         std::memory_order_acquire)) {
          continue;
        }
        word |= waiter_bit;
      }
      if (limit != nullptr) {
        futex_wait_for(word_, word, *limit);
        return;
      }
      futex_wait(word_, word);
      word = word_.load(std::memory_order_acquire);
    }
  }

  // For the waiter, once it has seen done(): clears the waiter bit, so that later drains to zero
  // (a task_group reused for many rounds) make no futex wake call with nobody waiting. The
  // finisher cannot clear it: it must not touch the word after its last read-modify-write. Only
  // the owner waits (it is alive while it does), so the waiter may touch the word afterwards; two
  // threads waiting at once while one of them may destroy the owner is not supported. (A
  // subpool is waited on only when it stops.) Only a word whose count is zero is changed: if
  // work was added meanwhile, the compare-exchange fails and the bit stays for the next drain,
  // one spare call. A second waiter still blocked was woken by the drain that brought the count
  // to zero, and one that blocks later sets the bit again first. Relaxed: the bit guards no
  // other data, and a relaxed read-modify-write continues the finishers' release sequence.
  void forget_waiters() noexcept {
    std::uint32_t word = word_.load(std::memory_order_relaxed);
    if (word >= unit || (word & waiter_bit) == 0) return;
    word_.compare_exchange_strong(word, word & ~waiter_bit, std::memory_order_relaxed, std::memory_order_relaxed);
  }

  // Test hook: whether a finisher that brings the count to zero would make a wake-up call.
  [[nodiscard]] bool waiter_flagged_for_testing() const noexcept {
    return (word_.load(std::memory_order_relaxed) & waiter_bit) != 0;
  }

 private:
  static constexpr std::uint32_t waiter_bit = 1;
  static constexpr std::uint32_t abandoned_bit = 2;
  static constexpr std::uint32_t unit = 4;  // one piece of work, in the word's upper 30 bits

  std::atomic<std::uint32_t> word_{0};
};

// Waits until `pending` is done; on a worker of a pool it helps run that pool's tasks meanwhile
// (lib/waiting.cpp).
void wait_until_done(pending_count& pending);

}  // namespace tidepool::detail
