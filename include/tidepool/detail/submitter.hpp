#pragma once
// submit / try_submit / go, written once for everything tasks can be submitted to (pool and
// subpool). The derived class provides
//     detail::submit_status submit_node(detail::task_node*, bool may_block);
// which either accepts the node or destroys it and counts the refusal.
//
// A callable that takes a std::stop_token receives one: stopped by cancel() on its handle and by
// the stop token of its submit_options, if any.

#include <optional>     // for std::optional, std::nullopt
#include <type_traits>  // for std::decay_t
#include <utility>      // for std::forward

#include "tidepool/detail/task_node.hpp"
#include "tidepool/submit_options.hpp"
#include "tidepool/task.hpp"

namespace tidepool::detail {

enum class submit_status { accepted, stopped, full, forked };
void throw_if_refused(submit_status status);  // pool_stopped, queue_full or used_after_fork (lib/pool.cpp)

template <class Derived>
class submitter {
 public:
  // Submits f (called once, as an rvalue, on a worker). Blocks while the queue is full unless
  // non-blocking. Throws pool_stopped or queue_full when refused (counted as dropped).
  template <class F>
  [[nodiscard]] auto submit(F&& f) -> task<task_result_t<F>> {
    return submit_with(std::forward<F>(f), nullptr);
  }

  // Like submit, but never blocks and never throws for a refusal: returns no task instead.
  template <class F>
  [[nodiscard]] auto try_submit(F&& f) -> std::optional<task<task_result_t<F>>> {
    return try_submit_with(std::forward<F>(f), nullptr);
  }

  // Fire and forget: no handle; an exception goes to the pool's on_unhandled_exception.
  template <class F>
  void go(F&& f) {
    go_with(std::forward<F>(f), nullptr);
  }

  // The same, with a priority, a deadline and a stop token (submit_options.hpp). A deadline
  // already past is accepted, and the task expires.
  template <class F>
  [[nodiscard]] auto submit(F&& f, const submit_options& options) -> task<task_result_t<F>> {
    return submit_with(std::forward<F>(f), &options);
  }
  template <class F>
  [[nodiscard]] auto try_submit(F&& f, const submit_options& options) -> std::optional<task<task_result_t<F>>> {
    return try_submit_with(std::forward<F>(f), &options);
  }
  template <class F>
  void go(F&& f, const submit_options& options) {
    go_with(std::forward<F>(f), &options);
  }

 private:
  Derived& self() noexcept { return static_cast<Derived&>(*this); }

  template <class F>
  auto submit_with(F&& f, const submit_options* options) -> task<task_result_t<F>> {
    using result = task_result_t<F>;
    task_node* n = make_task_node<std::decay_t<F>, result>(std::forward<F>(f), task_kind::with_handle, options);
    throw_if_refused(self().submit_node(n, /*may_block=*/true));
    return task_access<result>::make(n);
  }

  template <class F>
  auto try_submit_with(F&& f, const submit_options* options) -> std::optional<task<task_result_t<F>>> {
    using result = task_result_t<F>;
    task_node* n = make_task_node<std::decay_t<F>, result>(std::forward<F>(f), task_kind::with_handle, options);
    if (self().submit_node(n, /*may_block=*/false) != submit_status::accepted) return std::nullopt;
    return task_access<result>::make(n);
  }

  template <class F>
  void go_with(F&& f, const submit_options* options) {
    task_node* n = make_task_node<std::decay_t<F>, void>(std::forward<F>(f), task_kind::fire_and_forget, options);
    throw_if_refused(self().submit_node(n, /*may_block=*/true));
  }
};

}  // namespace tidepool::detail
