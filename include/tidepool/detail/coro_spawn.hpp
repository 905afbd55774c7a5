#pragma once
// spawn(pool, co_task): a co_task run as one counted task of the pool, through deferred
// completion (task_completion.hpp).
//
// The task's node holds a root coroutine that awaits the co_task and puts its outcome in the
// node (co_yield of the value, or the exception). A worker starts the task by resuming the root;
// the task then stays `running` while the coroutine is suspended (its worker goes on with other
// work), and the root completes it when the co_task has finished: the co_task's frame is gone
// by then, and the root destroys its own frame before complete_deferred makes the outcome
// visible. A task skipped before it starts (cancel(), the pool's stop token) destroys the root
// frame, and with it the unstarted co_task and what it holds.

#include <coroutine>    // for std::coroutine_handle, std::suspend_always, std::suspend_never
#include <exception>    // for std::current_exception
#include <type_traits>  // for std::is_void_v
#include <utility>      // for std::forward, std::move

#include "tidepool/detail/coro_frame_allocator.hpp"
#include "tidepool/detail/coro_promise.hpp"  // for co_task (declared)
#include "tidepool/detail/task_completion.hpp"
#include "tidepool/detail/task_node.hpp"

namespace tidepool::detail {

// The root coroutine of a spawned task; its promise knows the task's node.
template <class T>
struct spawn_root {
  struct promise_type : frame_allocated {
    task_node* node = nullptr;  // set before the root first runs

    spawn_root get_return_object() noexcept { return spawn_root{std::coroutine_handle<promise_type>::from_promise(*this)}; }
    std::suspend_always initial_suspend() const noexcept { return {}; }

    // The value, into the node (co_yield: a coroutine reaches its promise no other way).
    template <class U = T>
    std::suspend_never yield_value(U&& value) {
      construct_stored<T>(node, std::forward<U>(value));
      node->flags |= flag_has_result;
      return {};
    }
    void return_void() const noexcept {}
    void unhandled_exception() noexcept { node->store_error(std::current_exception()); }

    struct final_awaiter {
      [[nodiscard]] bool await_ready() const noexcept { return false; }
      void await_suspend(std::coroutine_handle<promise_type> finished) const noexcept {
        task_node* const node = finished.promise().node;
        finished.destroy();        // nothing of the coroutine is left ...
        complete_deferred(node);   // ... when the outcome becomes visible
      }
      void await_resume() const noexcept {}
    };
    final_awaiter final_suspend() const noexcept { return {}; }
  };
  std::coroutine_handle<promise_type> frame;
};

template <class T>
spawn_root<T> run_spawned(co_task<T> task) {
  if constexpr (std::is_void_v<T>) {
    co_await std::move(task);
  } else {
    co_yield co_await std::move(task);
  }
}

// The node's stored state until the run: the root, not started yet.
template <class T>
struct spawned_root {
  std::coroutine_handle<typename spawn_root<T>::promise_type> frame;
};

template <class T>
void spawn_ops(task_node* n, task_op op) noexcept {
  switch (op) {
    case task_op::run: {
      const auto frame = stored<spawned_root<T>>(n).frame;
      destroy_stored<spawned_root<T>>(n);  // the storage is the result's from now on
      frame.promise().node = n;
      frame.resume();  // the node may be completed, even released, by the time this returns
      return;
    }
    case task_op::cancel: {
      const auto frame = stored<spawned_root<T>>(n).frame;
      destroy_stored<spawned_root<T>>(n);
      frame.destroy();  // the unstarted co_task, its parameters and captures with it
      return;
    }
    case task_op::destroy_result:
      if constexpr (!std::is_void_v<T>) destroy_stored<T>(n);
      return;
  }
}

// A node for pool::submit-like submission: one reference for the scheduler, one for the handle.
template <class T>
task_node* make_spawn_node(co_task<T> task) {
  spawn_root<T> root = run_spawned(std::move(task));
  task_node* n = nullptr;
  try {
    n = make_node_with_ops<spawned_root<T>, T>(spawned_root<T>{root.frame}, &spawn_ops<T>, task_kind::with_handle);
  } catch (...) {
    root.frame.destroy();
    throw;
  }
  n->flags |= flag_completes_later;
  return n;
}

}  // namespace tidepool::detail
