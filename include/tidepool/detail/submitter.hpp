#pragma once
// submit / try_submit / go, written once for everything tasks can be submitted to (pool and
// subpool). The derived class provides
//     detail::submit_status submit_node(detail::task_node*, bool may_block);
// which either accepts the node or destroys it and counts the refusal.

#include <optional>     // for std::optional, std::nullopt
#include <type_traits>  // for std::decay_t, std::invoke_result_t
#include <utility>      // for std::forward

#include "tidepool/detail/task_node.hpp"
#include "tidepool/task.hpp"

namespace tidepool::detail {

enum class submit_status { accepted, stopped, full, forked };
void throw_if_refused(submit_status status);  // pool_stopped, queue_full or used_after_fork (lib/pool.cpp)

template <class F>
using task_result_t = std::invoke_result_t<std::decay_t<F>>;

template <class Derived>
class submitter {
 public:
  // Submits f (called once, as an rvalue, on a worker). Blocks while the queue is full unless
  // non-blocking. Throws pool_stopped or queue_full when refused (counted as dropped).
  template <class F>
  [[nodiscard]] auto submit(F&& f) -> task<task_result_t<F>> {
    using result = task_result_t<F>;
    task_node* n = make_task_node<std::decay_t<F>, result>(std::forward<F>(f), task_kind::with_handle);
    throw_if_refused(self().submit_node(n, /*may_block=*/true));
    return task_access<result>::make(n);
  }

  // Like submit, but never blocks and never throws for a refusal: returns no task instead.
  template <class F>
  [[nodiscard]] auto try_submit(F&& f) -> std::optional<task<task_result_t<F>>> {
    using result = task_result_t<F>;
    task_node* n = make_task_node<std::decay_t<F>, result>(std::forward<F>(f), task_kind::with_handle);
    if (self().submit_node(n, /*may_block=*/false) != submit_status::accepted) return std::nullopt;
    return task_access<result>::make(n);
  }

  // Fire and forget: no handle; an exception goes to the pool's on_unhandled_exception.
  template <class F>
  void go(F&& f) {
    task_node* n = make_task_node<std::decay_t<F>, void>(std::forward<F>(f), task_kind::fire_and_forget);
    throw_if_refused(self().submit_node(n, /*may_block=*/true));
  }

 private:
  Derived& self() noexcept { return static_cast<Derived&>(*this); }
};

}  // namespace tidepool::detail
