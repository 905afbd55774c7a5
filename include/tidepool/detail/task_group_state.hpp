#pragma once
// What a task_group and its tasks share: how many tasks are unfinished (a pending_count, so a
// finishing task never touches a group that its owner has destroyed), the group's cancellation
// and stop source, and its first failure.

#include <atomic>      // for std::atomic
#include <exception>   // for std::exception_ptr
#include <mutex>       // for std::mutex, std::lock_guard
#include <stop_token>  // for std::stop_source, std::stop_token

#include "tidepool/detail/pending_count.hpp"

namespace tidepool::detail {

class task_group_state {
 public:
  // Before the task can run anywhere.
  void task_added() noexcept { pending_.add(); }

  // The last touch of a finishing (or cancelled) task. Record a failure first.
  void task_finished() noexcept { pending_.finish(); }
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

  [[nodiscard]] pending_count& pending() noexcept { return pending_; }

  // Valid once done(): the first failure, or null.
  [[nodiscard]] const std::exception_ptr& first_failure() const noexcept { return first_failure_; }

 private:
  pending_count pending_;
  std::atomic<bool> failed_{false};
  std::atomic<bool> cancelled_{false};
  std::exception_ptr first_failure_;
  std::mutex stop_mutex_;
  std::stop_source stop_{std::nostopstate};  // guarded by stop_mutex_
};

}  // namespace tidepool::detail
