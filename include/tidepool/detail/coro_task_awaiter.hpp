#pragma once
// co_await on a tidepool::task<T>: the coroutine suspends, nothing blocks, and the task's
// completion posts its resumption to a worker of the task's pool (a continuation, see
// task_completion.hpp). Then the awaiter returns what get() returns, or throws what get()
// throws.

#include <coroutine>  // for std::coroutine_handle
#include <utility>    // for std::move

#include "tidepool/detail/coro_jobs.hpp"
#include "tidepool/detail/task_completion.hpp"
#include "tidepool/detail/task_node.hpp"
#include "tidepool/task.hpp"

namespace tidepool::detail {

template <class T>
class task_awaiter {
 public:
  explicit task_awaiter(task<T>&& awaited) noexcept : task_(std::move(awaited)) {}
  task_awaiter(const task_awaiter&) = delete;
  task_awaiter& operator=(const task_awaiter&) = delete;

  // Throws, as get() does, for an empty handle.
  [[nodiscard]] bool await_ready() const { return task_.ready(); }

  bool await_suspend(std::coroutine_handle<> suspended) {
    task_node* const node = task_access<T>::node(task_);
    // The task was unfinished a moment ago (await_ready): its pool is still known.
    resumption_.core = &pool_of(node);
    resumption_.job = make_task_node<resume_coroutine, void>(resume_coroutine{suspended}, task_kind::internal_job);
    resumption_.on_finished = &post_resumption_job;
    if (add_continuation(node, &resumption_)) return true;  // may have resumed already: no more touching *this
    discard_task_node(resumption_.job);  // finished meanwhile: continue at once
    return false;
  }

  T await_resume() { return task_.get(); }

 private:
  struct resumption : task_continuation {
    pool_core* core = nullptr;
    task_node* job = nullptr;
  };

  static void post_resumption_job(task_continuation* c) noexcept {
    const resumption& r = *static_cast<resumption*>(c);
    post_internal_job(*r.core, r.job);  // the coroutine may run, and this awaiter go, at once
  }

  task<T> task_;
  resumption resumption_;
};

}  // namespace tidepool::detail
