#pragma once
// What a task_group and its tasks share: how many tasks are unfinished, the group's stop source,
// and its first failure.
//
// Lifetime: the state lives inside the task_group object, usually on the waiting thread's stack.
// A finishing task's last touch is the read-modify-write that may let the waiter return (and
// destroy the state); after it, the task only passes the word's *address* to the futex wake
// system call, which does not read the memory. So nothing touches a destroyed group.

#include <atomic>       // for std::atomic
#include <chrono>       // for std::chrono::nanoseconds
#include <cstdint>      // for std::uint32_t
#include <exception>    // for std::exception_ptr
#include <mutex>        // for std::mutex, std::lock_guard
#include <stop_token>   // for std::stop_source, std::stop_token

#include "tidepool/detail/futex.hpp"

namespace tidepool::detail {

class task_group_state {
 public:
  // Before the task can run anywhere.
  void task_added() noexcept { pending_.fetch_add(unit, std::memory_order_relaxed); }

  // The last touch of a finishing (or cancelled) task. Record a failure first.
  void task_finished() noexcept {
    // acq_rel: everything the task did (its result, its recorded failure) happens-before the
    // waiter's acquire load that sees the count reach zero.
    const std::uint32_t before = pending_.fetch_sub(unit, std::memory_order_acq_rel);
    if (before / unit == 1 && (before & waiter_bit) != 0) futex_wake_all(pending_);
  }

  // The first failure wins; it also cancels the group, so its unstarted tasks are skipped.
  void record_failure(const std::exception_ptr& error) noexcept {
    bool expected = false;
    if (failed_.compare_exchange_strong(expected, true, std::memory_order_acq_rel)) {
      first_failure_ = error;  // published by the task_finished() that follows
      cancel();
    }
  }

  [[nodiscard]] bool cancelled() const noexcept { return cancelled_.load(std::memory_order_acquire); }

  void cancel() noexcept {
    cancelled_.store(true, std::memory_order_release);
    std::lock_guard lock(stop_mutex_);
    if (stop_.stop_possible()) stop_.request_stop();
  }

  // The std::stop_source is created on first use: a group whose tasks never ask for a token (the
  // fork-join case) allocates nothing.
  [[nodiscard]] std::stop_token token() {
    std::lock_guard lock(stop_mutex_);
    if (!stop_.stop_possible()) {
      stop_ = std::stop_source();
      if (cancelled_.load(std::memory_order_acquire)) stop_.request_stop();
    }
    return stop_.get_token();
  }

  [[nodiscard]] bool done() const noexcept { return pending_.load(std::memory_order_acquire) < unit; }

  // Blocks (no helping) until every task finished, or for at most `limit` if one is given.
  void block_until_done(const std::chrono::nanoseconds* limit = nullptr) noexcept {
    std::uint32_t word = pending_.load(std::memory_order_acquire);
    while (word >= unit) {
      if ((word & waiter_bit) == 0) {
        if (!pending_.compare_exchange_weak(word, word | waiter_bit, std::memory_order_acq_rel,
                                            std::memory_order_acquire)) {
          continue;
        }
        word |= waiter_bit;
      }
      if (limit != nullptr) {
        futex_wait_for(pending_, word, *limit);
        return;
      }
      futex_wait(pending_, word);
      word = pending_.load(std::memory_order_acquire);
    }
  }

  // Valid once done(): the first failure, or null.
  [[nodiscard]] const std::exception_ptr& first_failure() const noexcept { return first_failure_; }

 private:
  static constexpr std::uint32_t waiter_bit = 1;
  static constexpr std::uint32_t unit = 2;  // one task, in the word's upper 31 bits

  std::atomic<std::uint32_t> pending_{0};
  std::atomic<bool> failed_{false};
  std::atomic<bool> cancelled_{false};
  std::exception_ptr first_failure_;
  std::mutex stop_mutex_;
  std::stop_source stop_{std::nostopstate};  // guarded by stop_mutex_
};

}  // namespace tidepool::detail
