#pragma once
// task<T>: the move-only handle to one submitted task, like std::future<T> for a tidepool pool.
//
// Guarantees:
//   * When `ready()`, `wait()`, `wait_for()` or `get()` reports the task finished, its callable
//     and everything the callable captured have already been destroyed, and no queue of the pool
//     refers to the task any more. Two exceptions, for the queue reference only: a task that its
//     waiter ran itself past the helping cap (below), and a task cancel() cancelled, stay in their
//     queue slot, an empty node with no callable, until a worker reaches the slot and drops it;
//     a result that nobody took with get() lives as long.
//   * Everything the task did happens-before the return of the call that observed it finished.
//   * `get()` returns the task's value, or rethrows the very exception object the task threw, or
//     throws tidepool::task_cancelled if the task was skipped before it started (task_expired,
//     which is a task_cancelled, if it was skipped at its deadline: submit_options).
//   * `cancel()` decides between a task and its workers: of "it runs" and "it is cancelled",
//     exactly one happens, whatever cancel() races with (a worker taking the task, stop(),
//     resize(), a waiter running it, other cancel() calls).
//
// Waiting from inside a task of a pool: the waiting worker does not block; it runs other tasks of
// its pool (its own deque first, then the oldest submitted tasks, then steals) until the awaited
// task is done, so nested waits never deadlock a pool, even one with a single worker. Such a wait
// may therefore run unrelated tasks of the pool on the waiting thread: do not wait while holding
// a lock that those tasks may take. Nested more than 256 waits deep, it runs only its own
// fork-join work and, if nobody has started it yet, the awaited task itself (a task of a subpool
// excepted), so that recursion of any depth goes on.

#include <chrono>     // for std::chrono::duration, std::chrono::nanoseconds
#include <exception>  // for std::rethrow_exception
#include <type_traits>  // for std::is_void_v, std::is_reference_v
#include <utility>    // for std::exchange, std::move

#include "tidepool/detail/saturating_duration.hpp"
#include "tidepool/detail/task_node.hpp"
#include "tidepool/errors.hpp"

namespace tidepool {

class pool;

namespace detail {
// Waits for the node's outcome (helping if the caller is a worker). lib/waiting.cpp.
void wait_for_task(task_node* node);
bool wait_for_task_for(task_node* node, std::chrono::nanoseconds timeout);
// task<T>::cancel (lib/worker.cpp).
bool cancel_task(task_node* node) noexcept;
template <class T>
class task_access;
}  // namespace detail

template <class T>
class task {
  static_assert(!std::is_reference_v<T>, "tidepool: a task cannot return a reference; return a pointer or a std::reference_wrapper");

 public:
  task() noexcept = default;
  task(task&& other) noexcept : node_(std::exchange(other.node_, nullptr)) {}
  task& operator=(task&& other) noexcept {
    if (this != &other) {
      reset();
      node_ = std::exchange(other.node_, nullptr);
    }
    return *this;
  }
  task(const task&) = delete;
  task& operator=(const task&) = delete;
  ~task() { reset(); }

  // False for a default-constructed or moved-from handle, and after get().
  [[nodiscard]] bool valid() const noexcept { return node_ != nullptr; }

  [[nodiscard]] bool ready() const {
    check_valid();
    return node_->outcome() != detail::outcome_pending;
  }

  void wait() const {
    check_valid();
    detail::wait_for_task(node_);
  }

  // Returns true if the task finished within `timeout`.
  template <class Rep, class Period>
  bool wait_for(std::chrono::duration<Rep, Period> timeout) const {
    check_valid();
    return detail::wait_for_task_for(node_, detail::saturating_nanoseconds(timeout));
  }

  // If the task has not started, it never will: its callable and captures are destroyed before
  // this returns true, the task counts as `cancelled`, and get() throws task_cancelled. If it is
  // running, asks it to stop (on the std::stop_token its callable takes, if it takes one) and
  // returns false; false too if it has finished (or was cancelled already).
  bool cancel() {
    check_valid();
    return detail::cancel_task(node_);
  }

  // Waits, then returns the value or rethrows. Consumes the handle: valid() is false afterwards.
  T get() {
    wait();
    detail::task_node* n = std::exchange(node_, nullptr);
    struct releaser {
      detail::task_node* n;
      ~releaser() { detail::release_task_node(n); }
    } release_on_exit{n};
    switch (n->outcome()) {
      case detail::outcome_failed:
        // Take the exception out of the node first: the node may be released last by the worker,
        // and the exception's last owner should be the thread that handles it.
        std::rethrow_exception(n->take_error());
      case detail::outcome_cancelled:
        throw task_cancelled();
      case detail::outcome_expired:
        throw task_expired();
      default:
        break;
    }
    if constexpr (!std::is_void_v<T>) return std::move(detail::stored<T>(n));
  }

 private:
  friend class detail::task_access<T>;
  explicit task(detail::task_node* node) noexcept : node_(node) {}

  void check_valid() const {
    if (node_ == nullptr) throw error("tidepool: task handle is empty (default-constructed, moved from, or get() was called)");
  }
  void reset() noexcept {
    if (node_ != nullptr) detail::release_task_node(std::exchange(node_, nullptr));
  }

  detail::task_node* node_ = nullptr;
};

namespace detail {
// The one way between handles and nodes: for the pool, groups, subpools, coroutines.
template <class T>
class task_access {
 public:
  static task<T> make(task_node* node) noexcept { return task<T>(node); }
  // The handle's node (null if the handle is empty); the handle keeps its reference.
  static task_node* node(const task<T>& t) noexcept { return t.node_; }
};
}  // namespace detail

}  // namespace tidepool
