#pragma once
// co_task's promise: where a coroutine's result goes and whom it resumes when it finishes.
//
// A co_task is lazy (it starts suspended) and is started by exactly one party: a coroutine that
// awaits it, when_all, or spawn. Before starting it, that party tells the promise where the
// result goes (`slot`, which the starter owns) and what comes next: the awaiting coroutine
// (`continuation`) or a when_all join (`join`). The result is written straight into the slot by
// co_return, so nothing is copied at the end.
//
// At its final suspension the coroutine destroys its own frame — its locals, parameters and
// captures with it — and only then resumes what comes next, by symmetric transfer. So nothing
// the co_task held outlives it, and resuming the awaiter costs no stack: a chain of 10,000
// nested co_awaits runs in constant native stack (with optimisation; g++ without it, or with
// a sanitizer, makes the transfer a call: transfer_to then bounds the nesting, coro_jobs.hpp).

#include <concepts>     // for std::convertible_to
#include <coroutine>    // for std::coroutine_handle, std::suspend_always
#include <exception>    // for std::exception_ptr, std::current_exception, std::rethrow_exception
#include <optional>     // for std::optional
#include <type_traits>  // for std::is_reference_v, std::is_void_v
#include <utility>      // for std::forward, std::move

#include "tidepool/detail/coro_frame_allocator.hpp"
#include "tidepool/detail/coro_when_all.hpp"  // for join_counter

namespace tidepool {
// The first declaration, so the default is here: co_task<> is co_task<void>.
template <class T = void>
class co_task;
}

namespace tidepool::detail {

// The outcome of one co_task: its value (none for void) or its exception.
template <class T>
struct result_slot {
  std::optional<T> value;
  std::exception_ptr error;

  template <class U>
  void set_value(U&& v) {
    value.emplace(std::forward<U>(v));
  }
  T take() {
    if (error) std::rethrow_exception(error);
    return std::move(*value);
  }
};

template <>
struct result_slot<void> {
  std::exception_ptr error;
  void take() const {
    if (error) std::rethrow_exception(error);
  }
};

struct promise_base : frame_allocated {
  // What comes next, set by the starter: the awaiting coroutine, or a when_all join.
  std::coroutine_handle<> continuation;
  join_counter* join = nullptr;

  std::suspend_always initial_suspend() const noexcept { return {}; }

  struct final_awaiter {
    [[nodiscard]] bool await_ready() const noexcept { return false; }
    template <class Promise>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<Promise> finished) const noexcept {
      const promise_base& p = finished.promise();
      const std::coroutine_handle<> continuation = p.continuation;
      join_counter* const join = p.join;
      finished.destroy();  // everything the coroutine held goes before anyone learns it finished
      return join != nullptr ? join->child_finished() : transfer_to(continuation);
    }
    void await_resume() const noexcept {}
  };
  final_awaiter final_suspend() const noexcept { return {}; }
};

template <class T>
struct co_promise : promise_base {
  result_slot<T>* slot = nullptr;

  co_task<T> get_return_object() noexcept;

  // U = T by default, so that `co_return {a, b};` works.
  template <class U = T>
    requires std::convertible_to<U&&, T>
  void return_value(U&& value) {
    slot->set_value(std::forward<U>(value));
  }
  void unhandled_exception() noexcept { slot->error = std::current_exception(); }
};

template <>
struct co_promise<void> : promise_base {
  result_slot<void>* slot = nullptr;

  co_task<void> get_return_object() noexcept;
  void return_void() const noexcept {}
  void unhandled_exception() noexcept { slot->error = std::current_exception(); }
};

}  // namespace tidepool::detail
