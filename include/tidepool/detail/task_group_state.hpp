#pragma once
// What a task_group and its tasks share: how many tasks are unfinished (a pending_count, so a
// finishing task never touches a group that its owner has destroyed), the group's cancellation
// and stop source, and its first failure.
//
// Lifetime. On the heap (in a block cached per thread), owned by the task_group, which frees it
// once its tasks are done. A task_group destroyed from one of its own tasks (a capture owning
// the group included) cannot wait for that task: it orphans the state instead, and the task
// whose release brings the pending count to zero frees it (as subpool_core does).

#include <atomic>      // for std::atomic
#include <cstddef>     // for std::size_t
#include <exception>   // for std::exception_ptr
#include <mutex>       // for std::mutex, std::lock_guard
#include <new>         // for ::operator new
#include <stop_token>  // for std::stop_source, std::stop_token

#include "tidepool/detail/pending_count.hpp"
#include "tidepool/detail/task_owner.hpp"

namespace tidepool::detail {

// Blocks for task_group_state, a few kept per thread: fork-join code makes a group per call and
// destroys it on the same thread, where a malloc+free pair would cost as much as the rest of a
// small group. Trivially destructible and constant-initialised, so that each use is one
// thread-local access with no initialisation guard, inlined into the group's code, and so that
// it can still be read after the thread's thread_local destructors ran. lib/fork_join.cpp has
// the rest: the first block kept sets up their release at thread exit, and only then (never
// under AddressSanitizer, which must see every use after free) blocks are kept.
struct group_state_blocks {
  static constexpr std::size_t capacity = 8;
  void* blocks[capacity];
  std::size_t count;
  bool keeping;  // blocks freed here are kept (up to capacity)
};
inline constinit thread_local group_state_blocks this_thread_group_state_blocks{};
// When not keeping, or full: keeps the block (setting up the release first) or frees it.
void free_group_state_block(void* block) noexcept;

// The owner of the group's tasks (task_owner.hpp): skips them once the group is cancelled, keeps
// the first failure, and passes what happens on to the subpool the group submits to, if any.
class task_group_state final : public task_owner {
 public:
  // `direct_pool`: the pool the group submits to straight; `next`: the subpool it submits to.
  task_group_state(pool_core* direct_pool, task_owner* next) noexcept : task_owner(direct_pool, /*stays_local=*/true), next_(next) {}
  ~task_group_state() = default;
  task_group_state(const task_group_state&) = delete;
  task_group_state& operator=(const task_group_state&) = delete;

  // From the blocks kept by this thread (group_state_blocks), if any.
  static void* operator new(std::size_t size) {
    group_state_blocks& kept = this_thread_group_state_blocks;
    if (kept.count > 0) return kept.blocks[--kept.count];
    return ::operator new(size);
  }
  static void operator delete(void* block) noexcept {
    group_state_blocks& kept = this_thread_group_state_blocks;
    if (kept.keeping && kept.count < group_state_blocks::capacity) {
      kept.blocks[kept.count++] = block;
      return;
    }
    free_group_state_block(block);
  }

  [[nodiscard]] bool skips_unstarted() const noexcept override { return cancelled(); }
  void task_skipped() noexcept override {
    if (next_ != nullptr) next_->task_skipped();
  }
  // An expired task is not a failure: the group goes on, and wait() does not throw for it.
  void task_expired() noexcept override {
    if (next_ != nullptr) next_->task_expired();
  }
  [[nodiscard]] pool_core* counting_pool() const noexcept override {
    return next_ != nullptr ? next_->counting_pool() : direct_pool();
  }
  void task_started() noexcept override {
    if (next_ != nullptr) next_->task_started();
  }
  bool task_ended(const std::exception_ptr* error) noexcept override {
    if (error != nullptr) record_failure(*error);  // the first one cancels the group
    if (next_ != nullptr) static_cast<void>(next_->task_ended(error));
    return true;  // a go() task's exception is the group's failure, for wait() to rethrow
  }
  void task_released() noexcept override {
    task_owner* const next = next_;  // the group may be gone once pending_.finish() returns
    if (pending_.finish()) delete this;  // orphaned, and this was the last task
    if (next != nullptr) next->task_released();  // a group never outlives its subpool
  }

  // Before the task can run anywhere.
  void task_added() noexcept { pending_.add(); }

  // For a task the group's own submit gave up on (it never reached the pool), by the group
  // itself, which is alive and so does not orphan the state meanwhile.
  void task_finished() noexcept { static_cast<void>(pending_.finish()); }

  // For the group's destructor running inside one of the group's own tasks (runs_task_of): that
  // task holds a unit of the count until its task_released(), which is still to come and sees
  // the flag, so the state is freed by that release or by a later task's.
  void orphan() noexcept { pending_.abandon(); }

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
  task_owner* const next_;
  pending_count pending_;
  std::atomic<bool> failed_{false};
  std::atomic<bool> cancelled_{false};
  std::exception_ptr first_failure_;
  std::mutex stop_mutex_;
  std::stop_source stop_{std::nostopstate};  // guarded by stop_mutex_
};

}  // namespace tidepool::detail
