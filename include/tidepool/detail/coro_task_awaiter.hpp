#pragma once
// co_await on a tidepool::task<T>: the coroutine suspends, nothing blocks, and the task's
// completion posts its resumption to a worker of the task's pool (a continuation, see
// task_completion.hpp). Then the awaiter returns what get() returns, or throws what get()
// throws.

#include <coroutine>  // for std::coroutine_handle
#include <utility>    // for std::move

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

  bool await_suspend(std::coroutine_handle<> suspended) noexcept {
    resumption_.job.suspended = suspended;
    resumption_.on_finished = &post_resumption;
    // true: on_finished will run, maybe already on another thread: no more touching *this.
    return add_continuation(task_access<T>::node(task_), &resumption_);  // false: finished already
  }

  T await_resume() { return task_.get(); }

 private:
  // Resumes the coroutine: an embedded job, in this awaiter (in the coroutine's frame), so that
  // awaiting allocates nothing; the worker does not touch it after the run.
  struct resume_job : task_node {
    std::coroutine_handle<> suspended;
    resume_job() noexcept {
      ops = &run;
      kind = task_kind::embedded_job;
    }
    static void run(task_node* node, task_op op) noexcept {
      if (op == task_op::run) static_cast<resume_job*>(node)->suspended.resume();
    }
  };
  struct resumption : task_continuation {
    resume_job job;
  };

  static void post_resumption(task_continuation* c) noexcept {
    // pool_of is valid here (task_completion.hpp); the coroutine may run, and this awaiter go,
    // as soon as the job is posted.
    post_internal_job(pool_of(c->node), &static_cast<resumption*>(c)->job);
  }

  task<T> task_;
  resumption resumption_;
};

}  // namespace tidepool::detail
