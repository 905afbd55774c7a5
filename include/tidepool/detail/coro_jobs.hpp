#pragma once
// How a coroutine's resumption becomes work for a worker: an internal job (a task node of kind
// internal_job: never counted in metrics, never refused) whose run resumes a coroutine handle.
// lib/coro.cpp.

#include <coroutine>  // for std::coroutine_handle

#include "tidepool/detail/task_node.hpp"

namespace tidepool {
class pool;
}

namespace tidepool::detail {

// The callable of a job that resumes one suspended coroutine.
struct resume_coroutine {
  std::coroutine_handle<> suspended;
  void operator()() const { suspended.resume(); }
};

struct worker;
// The calling thread's worker (of any pool), or null (lib/worker.cpp). Callers that push and
// take back several jobs in a row look it up once; none keeps it across a suspension (see
// coro_frame_allocator.hpp on clang and thread-locals).
worker* current_worker() noexcept;
// Puts `job` on w's deque, newest first for that worker, oldest first for thieves, with the same
// wake-up policy as parallel_invoke's spawn; if the deque is full, on the global queue of w's
// pool instead, not run in place unless that queue cannot grow (lib/coro.cpp says why). False,
// with `job` untouched, if `w` is null (the thread is no worker).
[[nodiscard]] bool push_local_job(worker* w, task_node* job) noexcept;
// Offers a when_all's `job` as push_local_job does, or, while w's deque already holds a job that
// no thief has taken, keeps it on this thread unoffered: the thread takes it back (or offers it)
// later, without the deque's fences. False, with `job` untouched, if `w` is null.
[[nodiscard]] bool offer_local_job(worker* w, task_node* job) noexcept;
// Keeps `job` as offer_local_job would, if it would: true if kept, else false (`job` untouched).
[[nodiscard]] bool keep_local_job(worker& w, task_node* job) noexcept;
// The newest job this thread kept, else the newest job on w's deque if its ops are `ops` (the
// caller now owns it: it is out of the deque); null if the deque is empty or its newest job is
// of another kind (which stays where it was).
[[nodiscard]] task_node* take_back_local_job(worker& w, task_ops_fn ops) noexcept;
// Offers every job this thread kept. Set as the worker's after_this_run hook
// (task_completion.hpp) whenever a job is kept, so the worker calls it when the run returns: a
// coroutine that suspended in the run, whatever it awaits, leaves no sibling hidden.
void offer_kept_jobs() noexcept;
// Posts a job resuming `suspended` to a worker of `p` (this thread's deque if it is one of p's
// workers, else p's global queue). False, posting nothing, if `p` is stopped. Throws
// std::bad_alloc.
[[nodiscard]] bool post_resumption(pool& p, std::coroutine_handle<> suspended);
// Symmetric transfer (await_suspend returning the next coroutine's handle) is a tail call with
// clang always, and with g++ when optimising without a sanitizer; otherwise (g++ at -O0, or with
// AddressSanitizer or ThreadSanitizer) every transfer is a nested call, and a long chain of them
// (a when_all tree run on one thread, a deep co_await nesting) would overflow the stack.
#if defined(__clang__) || (defined(__OPTIMIZE__) && !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__))
inline constexpr bool transfers_are_tail_calls = true;
#else
inline constexpr bool transfers_are_tail_calls = false;
#endif

// Whether the calling thread has used more than half of its stack.
[[nodiscard]] bool stack_running_low() noexcept;
// Posts `next` as a job on this thread's worker and returns noop, or returns `next` if this
// thread is no worker or its deque is full.
[[nodiscard]] std::coroutine_handle<> post_to_this_worker(std::coroutine_handle<> next) noexcept;

// The coroutine to transfer to: `next`, or, where a transfer is a call and the stack runs low,
// noop after posting `next` to this worker, which then unwinds to its loop and runs it there.
[[nodiscard]] inline std::coroutine_handle<> transfer_to(std::coroutine_handle<> next) noexcept {
  if constexpr (transfers_are_tail_calls) {
    return next;
  } else {
    return stack_running_low() ? post_to_this_worker(next) : next;
  }
}

// Whether the calling thread is a worker of some tidepool pool.
[[nodiscard]] inline bool on_a_worker() noexcept { return current_worker() != nullptr; }

}  // namespace tidepool::detail
