#pragma once
// Who a task reports to, other than the pool that runs it: a task_group, a subpool, and later
// kinds (timers, deadlines, coroutines). The worker knows only this interface, so the layers
// built on the pool implement it and the pool never names them.
//
// For one task the worker calls, on one thread and in this order:
//   skips_unstarted()                      once, before the task starts
//   task_skipped() or task_expired()       if it skipped it (the callable was destroyed unrun;
//                                          task_expired: at its deadline)
//   or task_started() then task_ended()    if it ran it
//   task_released()                        last, after the outcome was published and the node
//                                          released: the owner may be destroyed once it returns
// An owner that has an owner of its own (a group on a subpool) passes each call on.
// A task cancelled through its handle (task<T>::cancel) is reported the same way, skips_unstarted
// aside, by the cancelling thread.

#include <exception>  // for std::exception_ptr

namespace tidepool::detail {

class pool_core;

class task_owner {
 public:
  // A task is *direct* when a waiter on `direct_pool` may run it itself (past the helping cap):
  // it is counted and holds its slot in that pool only. Not so for a subpool's tasks, whose
  // limit a waiter would bypass. `stays_local`: submitted from inside a task of the pool, it is
  // fork-join work and goes onto the worker's deque, not to the FIFO queue (task_group's tasks).
  constexpr task_owner(pool_core* direct_pool, bool stays_local) noexcept
      : direct_pool_(direct_pool), stays_local_(stays_local) {}

  [[nodiscard]] pool_core* direct_pool() const noexcept { return direct_pool_; }
  [[nodiscard]] bool stays_local() const noexcept { return stays_local_; }
  // The pool whose metrics count this owner's tasks: for a subpool (or a group on one), its root
  // pool. A task holds a slot of that pool's capacity if and only if its owner is direct.
  [[nodiscard]] virtual pool_core* counting_pool() const noexcept { return direct_pool_; }

  // True: the task is not to run (its group failed or was stopped).
  [[nodiscard]] virtual bool skips_unstarted() const noexcept { return false; }
  virtual void task_skipped() noexcept {}
  virtual void task_expired() noexcept { task_skipped(); }
  virtual void task_started() noexcept {}
  // `error`: what the task threw, or null if it returned. True if the owner took the error (a
  // group keeps its first failure for wait()), so that it does not reach the pool's handler.
  virtual bool task_ended(const std::exception_ptr* error) noexcept {
    static_cast<void>(error);
    return false;
  }
  virtual void task_released() noexcept {}

 protected:
  ~task_owner() = default;
  task_owner(const task_owner&) = default;
  task_owner& operator=(const task_owner&) = default;

 private:
  pool_core* direct_pool_;
  bool stays_local_;
};

// True while this thread runs, skips or destroys the callable of one of `owner`'s tasks (for an
// owner's destructor: it cannot wait for that task). Defined in lib/worker.cpp.
[[nodiscard]] bool runs_task_of(const task_owner& owner) noexcept;

}  // namespace tidepool::detail
