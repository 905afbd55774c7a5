#pragma once
// tidepool::task_group — tasks that are waited for together and fail together (pond's group,
// with its context cancellation).
//
//   tidepool::task_group g{pool};                                 // or g{subpool}
//   auto size = g.submit([&] { return fetch(a); });              // task<std::size_t>
//   g.go([&](std::stop_token stop) { crawl(b, stop); });         // may take the group's token
//   g.wait();   // waits for all, running ones included; rethrows the first failure
//
// Semantics:
//   * The first task to throw cancels the group: its tasks that have not started are skipped,
//     counted `cancelled` in the pool's metrics, and their handles throw task_cancelled. Running
//     tasks see stop_requested() on their std::stop_token and may return early. wait() still
//     waits for them, then rethrows that first exception (the first by time of failure).
//   * stop() cancels the group the same way without a failure. Cancellation is final: tasks
//     submitted to a cancelled group are accepted and then skipped.
//   * wait() on an empty group returns at once. Called from inside a task of the pool, wait()
//     helps (runs other tasks) instead of blocking, so nested groups never deadlock.
//   * Submitting through a group to a stopped pool throws pool_stopped, as pool::submit does.
//   * The destructor waits for the group's tasks (without rethrowing): tasks may refer to the
//     group's frame. Called from one of the group's own tasks (a capture owning the group, such
//     as the last shared_ptr to it, included), it cannot wait for that task: it returns at once,
//     and the group's accepted tasks still run (or are skipped, if the group was cancelled);
//     the last of them frees the group's state, which lives on the heap for this reason.
//   * A go() task's exception is the group's failure: wait() rethrows it; it does not reach the
//     pool's on_unhandled_exception.
//   * Start order. From a thread outside the pool, the group's tasks go to the pool's FIFO queue
//     and start in submission order, as pool::submit's do (pool.hpp): so "the first failure
//     cancels the tasks after it" holds for every task that had not started when it failed.
//     From inside one of the pool's tasks, a group is fork-join: its tasks go onto the worker's
//     own deque, where wait() finds them first; that worker runs them newest first and thieves
//     take the oldest. A task the deque has no room for runs at once on the submitting worker
//     (counted in inline_runs), so recursion of any depth finishes.

#include <memory>       // for std::unique_ptr, std::make_unique
#include <stop_token>   // for std::stop_token
#include <type_traits>  // for std::is_invocable_v, std::invoke_result_t
#include <utility>      // for std::forward, std::move

#include "tidepool/detail/task_group_state.hpp"
#include "tidepool/detail/task_node.hpp"
#include "tidepool/pool.hpp"
#include "tidepool/submit_options.hpp"
#include "tidepool/subpool.hpp"
#include "tidepool/task.hpp"

namespace tidepool {

namespace detail {

// A callable that takes the group's stop token is bound to it here, so the scheduler only ever
// sees callables without arguments.
template <class F>
auto bind_stop_token(F&& f, task_group_state& group) {
  using fn = std::decay_t<F>;
  if constexpr (std::is_invocable_v<fn, std::stop_token>) {
    return [f = fn(std::forward<F>(f)), token = group.token()]() mutable { return std::invoke(std::move(f), token); };
  } else {
    return fn(std::forward<F>(f));
  }
}
}  // namespace detail

class task_group {
 public:
  // May throw std::bad_alloc (the group's state is allocated).
  explicit task_group(pool& p)
      : submit_(&submit_to<pool>),
        executor_(&p),
        state_(std::make_unique<detail::task_group_state>(&detail::pool_access::core(p), nullptr)) {}
  explicit task_group(subpool& s)
      : submit_(&submit_to<subpool>),
        executor_(&s),
        state_(std::make_unique<detail::task_group_state>(nullptr, &detail::subpool_access::owner(s))) {}
  ~task_group() {
    // From one of our own tasks, which cannot be waited for. That task holds a unit of the
    // count, so the walk over this thread's running tasks is needed only while some are pending
    // (not after a wait(), the fork-join case).
    if (!state_->pending().done() && detail::runs_task_of(*state_)) {
      state_.release()->orphan();
      return;
    }
    detail::wait_until_done(state_->pending());
  }

  task_group(const task_group&) = delete;
  task_group& operator=(const task_group&) = delete;

  template <class F>
  [[nodiscard]] auto submit(F&& f) {
    auto bound = detail::bind_stop_token(std::forward<F>(f), *state_);
    using result = std::invoke_result_t<decltype(bound)>;
    detail::task_node* n =
        detail::make_task_node<decltype(bound), result>(std::move(bound), detail::task_kind::with_handle);
    add(n);
    return detail::task_access<result>::make(n);
  }

  template <class F>
  void go(F&& f) {
    auto bound = detail::bind_stop_token(std::forward<F>(f), *state_);
    add(detail::make_task_node<decltype(bound), void>(std::move(bound), detail::task_kind::fire_and_forget));
  }

  // With submit_options (priority, deadline, stop token). A callable that takes a std::stop_token
  // gets the task's own: stopped by the group's cancellation, by the options' token and by
  // cancel() on its handle. An expired task is not a failure: the group goes on.
  template <class F>
  [[nodiscard]] auto submit(F&& f, const submit_options& options) {
    using result = detail::task_result_t<F>;
    detail::task_node* n = make_node<F, result>(std::forward<F>(f), detail::task_kind::with_handle, options);
    add(n);
    return detail::task_access<result>::make(n);
  }

  template <class F>
  void go(F&& f, const submit_options& options) {
    add(make_node<F, void>(std::forward<F>(f), detail::task_kind::fire_and_forget, options));
  }

  // Waits for every task of the group, then rethrows the group's first failure, if any.
  // Several threads may wait at once, as long as none of them destroys the group while the
  // others may still be inside wait(): a waiter touches the group after the last task finishes.
  void wait() {
    detail::wait_until_done(state_->pending());
    if (state_->first_failure()) std::rethrow_exception(state_->first_failure());
  }

  void stop() noexcept { state_->cancel(); }
  [[nodiscard]] bool stopped() const noexcept { return state_->cancelled(); }
  [[nodiscard]] std::stop_token get_stop_token() { return state_->token(); }

 private:
  template <class F, class R>
  detail::task_node* make_node(F&& f, detail::task_kind kind, const submit_options& options) {
    using fn = std::decay_t<F>;
    if constexpr (detail::takes_stop_token<fn>) {
      const std::stop_token group_token = state_->token();
      return detail::make_task_node<fn, R>(std::forward<F>(f), kind, &options, &group_token);
    } else {
      return detail::make_task_node<fn, R>(std::forward<F>(f), kind, &options);
    }
  }

  template <class Executor>
  static detail::submit_status submit_to(void* executor, detail::task_node* n) {
    return static_cast<Executor*>(executor)->submit_node(n, /*may_block=*/true);
  }

  void add(detail::task_node* n) {
    n->owner = state_.get();
    state_->task_added();
    detail::submit_status status;
    try {
      status = submit_(executor_, n);
    } catch (...) {  // out of memory while queueing: the node is gone, so is its pending unit
      state_->task_finished();
      throw;
    }
    if (status != detail::submit_status::accepted) {
      state_->task_finished();  // it never ran; the pool already destroyed and counted it
      detail::throw_if_refused(status);
    }
  }

  detail::submit_status (*submit_)(void*, detail::task_node*);
  void* executor_;  // the pool or subpool
  std::unique_ptr<detail::task_group_state> state_;  // never null until orphaned
};

}  // namespace tidepool
